import { chmodSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

/**
 * A llama-quantize stand-in for the failure tests of `slm quantize` and `--sweep`. It hands the call to the
 * real tool in `realToolsDir` when it should not fail (--help/--version always; with `failOn`, every call whose
 * arguments do not contain it). Otherwise it writes part of the output model, records its pid, prints one
 * progress line as the real tool does (the test reads stderr to know the pid file is there), and then hangs
 * (to be interrupted) or, with FAKE_MODE=fail in its environment, fails the way a full disk does.
 */
export function writeFakeQuantize(realToolsDir: string, o: { failOn?: string; label: string }): { dir: string; pidFile: string } {
  const dir = mkdtempSync(path.join(tmpdir(), "slm-fake-quantize-"));
  const pidFile = path.join(dir, "pid");
  const real = path.join(realToolsDir, "llama-quantize");
  const passThrough = o.failOn
    ? `case "$*" in *${o.failOn}*) ;; *) exec "${real}" "$@" ;; esac`
    : `case "$1" in --help|--version) exec "${real}" "$1" ;; esac`;
  const fake = path.join(dir, "llama-quantize");
  writeFileSync(
    fake,
    `#!/bin/sh
${passThrough}
# The output is the last .gguf argument (a thread count may follow the type).
for a in "$@"; do case "$a" in *.gguf) out="$a" ;; esac; done
head -c 300000 /dev/zero > "$out"
echo $$ > "${pidFile}"
echo "[   1/  37]                    token_embd.weight - [  256,   320,     1,     1], type =    f32, converting to ${o.label} .. size =     0.31 MiB ->     0.08 MiB"
if [ "$FAKE_MODE" = "fail" ]; then
  echo "llama_model_quantize: failed to quantize: write error: No space left on device" >&2
  exit 1
fi
exec sleep 60
`,
  );
  chmodSync(fake, 0o755);
  return { dir, pidFile };
}
