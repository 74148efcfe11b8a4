import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { MissingDependencyError } from "../../core/errors.js";
import { type BackendContext, emit, withStep } from "../../core/events.js";
import { type ExecResult, exec, findExecutable, pathDirs } from "../../core/exec.js";
import { withLock } from "../../core/lock.js";
import { slmPaths } from "../../core/paths.js";
import { bundledSource } from "../llamacpp/source.js";

/**
 * llama.cpp's Python side (convert_hf_to_gguf.py, convert_lora_to_gguf.py, the `conversion` package
 * and gguf-py), taken from the source bundle node-llama-cpp ships, so the GGUF files it writes match
 * the inference engine slm runs. Only those paths are checked out (about 3 MB of the 200 MB tree),
 * once per release, into $SLM_HOME/llama.cpp-py/<release>.
 */
export type LlamaCppScript = "convert_hf_to_gguf.py" | "convert_lora_to_gguf.py";

/** What the scripts read besides themselves: their package, gguf-py, and chat templates some models use. */
const PYTHON_PATHS = ["convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion", "gguf-py", "models/templates", "requirements", "LICENSE"];

export interface LlamaCppPython {
  dir: string;
  release: string;
  commit?: string;
}

export function pythonSourceDir(release: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(slmPaths(env).home, "llama.cpp-py", release);
}

/** Checks out the Python side of the bundled llama.cpp source, once; later calls return at once. */
export async function llamaCppPython(ctx: BackendContext = {}, env: NodeJS.ProcessEnv = process.env): Promise<LlamaCppPython> {
  const source = bundledSource();
  const dest = pythonSourceDir(source.release, env);
  const ready = readManifest(dest);
  if (ready) return ready;
  const git = await findExecutable("git", pathDirs(env), env);
  if (!git) throw new MissingDependencyError("Unpacking llama.cpp's conversion scripts from node-llama-cpp's source bundle needs git, which is not on PATH.", "install git (apt install git / brew install git)");
  mkdirSync(path.dirname(dest), { recursive: true });
  return withLock(`llama.cpp-py:${dest}`, async () => {
    const again = readManifest(dest);
    if (again) return again;
    const title = `Unpacking llama.cpp ${source.release}'s conversion scripts`;
    const work = mkdtempSync(path.join(path.dirname(dest), `.checkout-${source.release}-`));
    try {
      return await withStep(ctx, "llama.cpp:python", title, async () => {
        const src = path.join(work, "src");
        const opts = { env, signal: ctx.signal, label: "git" };
        await exec(git, ["-c", "advice.detachedHead=false", "clone", "--quiet", "--no-checkout", source.bundle, src], opts);
        await exec(git, ["-C", src, "checkout", "HEAD", "--", ...PYTHON_PATHS], opts);
        const commit = (await exec(git, ["-C", src, "rev-parse", "HEAD"], opts)).stdout.trim() || undefined;
        // The history is 35 MB that nothing reads.
        rmSync(path.join(src, ".git"), { recursive: true, force: true });
        writeFileSync(path.join(src, "slm-source.json"), JSON.stringify({ release: source.release, commit }, null, 2) + "\n");
        // A complete folder appears by one rename, or not at all.
        rmSync(dest, { recursive: true, force: true });
        renameSync(src, dest);
        return { dir: dest, release: source.release, commit };
      }, () => dest);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
}

function readManifest(dir: string): LlamaCppPython | undefined {
  try {
    const m = JSON.parse(readFileSync(path.join(dir, "slm-source.json"), "utf8")) as { release: string; commit?: string };
    if (!PYTHON_PATHS.every((p) => existsSync(path.join(dir, p)))) return undefined;
    return { dir, release: m.release, commit: m.commit };
  } catch {
    return undefined;
  }
}

/** A conversion script and the environment it runs in (gguf-py and the `conversion` package importable). */
export async function llamaCppScript(name: LlamaCppScript, ctx: BackendContext = {}): Promise<{ script: string; env: Record<string, string>; dir: string; release: string }> {
  const src = await llamaCppPython(ctx);
  const pythonPath = [path.join(src.dir, "gguf-py"), src.dir, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter);
  return { script: path.join(src.dir, name), env: { PYTHONPATH: pythonPath }, dir: src.dir, release: src.release };
}

/**
 * Runs a conversion script from `llamaCppScript` with its output streamed line by line: `onLine` sees each
 * line first and returns true for those it turned into progress; the others become log events (ERROR
 * lines as warnings, the rest for --verbose). Failures keep the last 40 lines for the error.
 */
export function runLlamaCppScript(python: string, script: { script: string; env: Record<string, string> }, args: readonly string[], ctx: BackendContext, onLine: (line: string) => boolean = () => false): Promise<ExecResult> {
  const label = path.basename(script.script);
  return exec(python, [script.script, ...args], {
    env: { ...script.env, PYTHONUNBUFFERED: "1", PYTHONIOENCODING: "utf-8" },
    signal: ctx.signal,
    buffer: false,
    tailLines: 40,
    label,
    onLine: (line) => {
      if (onLine(line) || !line.trim()) return;
      // The scripts' WARNING lines are notes about the model ("Unknown RoPE type…"), not about the user's
      // command: kept for --verbose. Their ERROR lines end in a failure that the error message reports.
      emit(ctx.onEvent, { type: "log", level: /^ERROR/.test(line) ? "warn" : "debug", message: line });
    },
  });
}
