import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { BIN, FIXTURE, sandbox } from "../helpers/cli.js";
import { hubPerTest } from "../helpers/hubPerTest.js";
import { replay } from "../helpers/vt.js";

// The live view in a real pseudo-terminal (util-linux `script`), as a user at an 80×24 terminal sees it.
// Ink redraws its live lines by erasing as many rows as it drew; a line wider than the terminal is
// wrapped (by Ink or by the terminal) onto more rows, and leaves stale copies or a torn bar behind.
const hasScript = (() => {
  try {
    execFileSync("script", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

const hub = hubPerTest();

const COLUMNS = 80;
const ROWS = 24;

/**
 * Runs slm in a pseudo-terminal of the given size; returns everything the terminal received. With
 * `resize`, the terminal is narrowed once the first progress bar has been drawn: the pseudo-terminal gets
 * the new width (the kernel signals slm with SIGWINCH), and a marker in the output tells the replay from
 * where on the screen is narrower.
 */
async function inTerminal(args: string[], env: Record<string, string>, columns: number, rows: number, resize?: { columns: number }): Promise<{ raw: string; exitCode: number | undefined }> {
  const quote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
  const flag = path.join(mkdtempSync(path.join(tmpdir(), "slm-pty-")), "resize");
  const later = resize ? `(while [ ! -e ${quote(flag)} ]; do sleep 0.05; done; stty cols ${resize.columns} </dev/tty; printf '\\033]slm-resize=${resize.columns}\\007') & ` : "";
  const command = `stty cols ${columns} rows ${rows}; ${later}exec ${["node", BIN, ...args].map(quote).join(" ")}`;
  // CI must be absent (Ink, like slm, draws no live view when it is set, even empty); TERM names a
  // terminal that understands cursor movement.
  const { CI: _ci, ...rest } = { ...process.env, ...env, TERM: "xterm-256color" };
  const child = execa("script", ["-q", "-e", "-c", command, "/dev/null"], { env: rest, extendEnv: false, reject: false, stdin: "ignore", timeout: 120_000 });
  child.stdout!.on("data", (d: Buffer) => {
    if (resize && /[█░]/.test(d.toString()) && !existsSync(flag)) writeFileSync(flag, "");
  });
  const r = await child;
  return { raw: r.stdout, exitCode: r.exitCode };
}

const BAR = /[█░]/;

describe.skipIf(!hasScript)("the live view in a real terminal (80×24, and narrowed from 120 to 60)", () => {
  for (const name of ["Meta-Llama-3.1-8B-Instruct-abliterated-F16.gguf", "a-rather-long-model-name-that-does-not-fit-beside-its-progress-bar-at-eighty-columns-F16.gguf"]) {
    it(`slm pull of ${name.length}-character file name: one progress line on one row, no stale copies`, async () => {
      const s = await hub({ repos: [{ id: "acme/long-GGUF", files: [{ path: name, file: path.join(FIXTURE, "gguf", "tiny-arith-f16.gguf") }] }], throttleBytesPerSec: 2 << 20 });
      const sb = sandbox(s.url);
      const { raw, exitCode } = await inTerminal(["pull", "acme/long-GGUF:F16"], sb.env, COLUMNS, ROWS);
      expect(exitCode, raw).toBe(0);
      const screen = replay(raw, COLUMNS, ROWS);
      // A few seconds of download at 2 MB/s: the view redrew its progress line several times.
      const live = screen.frames.filter((f) => f.some((row) => BAR.test(row)));
      expect(live.length, raw).toBeGreaterThan(3);
      for (const frame of live) {
        // One file downloading: its bar, percentage and amount on exactly one row of the screen.
        const rows = frame.filter((row) => BAR.test(row) || /\d+%|MB\/s|ETA/.test(row));
        expect(rows, frame.join("\n")).toHaveLength(1);
        expect(rows[0]).toMatch(/^› .*F16\.gguf █*░* \d+%/);
      }
      // When it is done: the file once, as finished, and nothing of the progress line left.
      const all = screen.lines.join("\n");
      expect(screen.lines.filter((l) => l.startsWith("✓ ") && l.includes(name.slice(0, 12))), all).toHaveLength(1);
      expect(screen.lines.filter((l) => l.startsWith("› ") || BAR.test(l)), all).toEqual([]);
    }, 150_000);
  }

  it("narrowed from 120 to 60 columns during a pull: the progress line is laid out again at 60", async () => {
    const name = "Meta-Llama-3.1-8B-Instruct-abliterated-F32.gguf";
    const s = await hub({ repos: [{ id: "acme/long-GGUF", files: [{ path: name, file: path.join(FIXTURE, "gguf", "tiny-arith-f32.gguf") }] }], throttleBytesPerSec: 2 << 20 });
    const sb = sandbox(s.url);
    const { raw, exitCode } = await inTerminal(["pull", "acme/long-GGUF:F32"], sb.env, 120, ROWS, { columns: 60 });
    expect(exitCode, raw).toBe(0);
    const screen = replay(raw, 120, ROWS);
    expect(screen.resizes, "the resize happened while slm ran").toHaveLength(1);
    const progress = (frame: string[]) => frame.filter((row) => BAR.test(row));
    const before = screen.frames.slice(0, screen.resizes[0]).filter((f) => progress(f).length > 0);
    // Frames after the resize while the file still downloads (the last one prints it as done).
    const after = screen.frames.slice(screen.resizes[0]).filter((f) => progress(f).length > 0 && !f.some((row) => row.includes("(verified)")));
    expect(before.length, raw).toBeGreaterThan(0);
    expect(after.length, raw).toBeGreaterThan(1);
    // Before: the whole name and the rate fit in 120 columns.
    expect(progress(before[before.length - 1]!)[0]).toContain(name);
    // After (once slm has had the signal): the live row, the lowest, is laid out for 60 columns, the
    // name shortened, the numbers still there. Rows drawn at 120 in the moment of the resize may be
    // left above it: a terminal wraps them, and no program can tell how (some reflow, some cut).
    const last = after[after.length - 1]!;
    const live = progress(last).pop()!;
    expect(live, last.join("\n")).toMatch(/^› .*F32\.gguf █*░* \d+%/);
    expect(live).toContain("…");
    expect(Array.from(live).length, last.join("\n")).toBeLessThanOrEqual(60);
  }, 150_000);
});
