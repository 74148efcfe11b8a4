import { execFileSync } from "node:child_process";
import path from "node:path";
import { execa } from "execa";
import { afterEach, describe, expect, it } from "vitest";
import { BIN, FIXTURE, sandbox } from "../helpers/cli.js";
import { type HubServer, startHubServer } from "../helpers/hubServer.js";
import { replay } from "../helpers/vt.js";

// The live view in a real pseudo-terminal (util-linux `script`), as a user at an 80×24 terminal sees it:
// Ink redraws its live lines by erasing as many rows as it printed, so a line wider than the terminal
// (which the terminal wraps onto two rows) leaves a stale copy behind on every redraw.
const hasScript = (() => {
  try {
    execFileSync("script", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

const servers: HubServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

const LONG = process.env.LONG_NAME ?? "a-rather-long-model-name-that-does-not-fit-beside-its-progress-bar-at-eighty-columns-F16.gguf";
const COLUMNS = 80;
const ROWS = 24;

/** Runs slm in a pseudo-terminal of the given size; returns everything the terminal received. */
async function inTerminal(args: string[], env: Record<string, string>, columns: number, rows: number): Promise<{ raw: string; exitCode: number | undefined }> {
  const quote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
  const command = `stty cols ${columns} rows ${rows}; exec ${["node", BIN, ...args].map(quote).join(" ")}`;
  // CI must be absent (Ink, like slm, draws no live view when it is set, even empty); TERM names a
  // terminal that understands cursor movement.
  const { CI: _ci, ...rest } = { ...process.env, ...env, TERM: "xterm-256color" };
  const r = await execa("script", ["-q", "-e", "-c", command, "/dev/null"], { env: rest, extendEnv: false, reject: false, stdin: "ignore", timeout: 120_000 });
  return { raw: r.stdout, exitCode: r.exitCode };
}

describe.skipIf(!hasScript)("the live view in an 80×24 terminal", () => {
  it("slm pull of a long-named file keeps one progress line, every row within 80 columns", async () => {
    const s = await startHubServer({ repos: [{ id: "acme/long-GGUF", files: [{ path: LONG, file: path.join(FIXTURE, "gguf", "tiny-arith-f16.gguf") }] }], throttleBytesPerSec: 2 << 20 });
    servers.push(s);
    const sb = sandbox(s.url);
    const { raw, exitCode } = await inTerminal(["pull", "acme/long-GGUF:F16"], sb.env, COLUMNS, ROWS);
    expect(exitCode, raw).toBe(0);
    if (process.env.DUMP_RAW) (await import("node:fs")).writeFileSync(process.env.DUMP_RAW, raw);
    // A few seconds of download: the view redrew its progress line many times.
    const redraws = raw.split("\x1b[2K").length - 1;
    expect(redraws, "the progress line was redrawn").toBeGreaterThan(5);
    const screen = replay(raw, COLUMNS, ROWS);
    // Nothing the view drew was wider than the terminal…
    expect(screen.wraps, screen.lines.join("\n")).toBe(0);
    // …so no stale progress lines are left: the file appears once, as finished, and no bar remains.
    const mentions = screen.lines.filter((l) => l.includes("a-rather-long") || l.includes("F16.gguf"));
    expect(mentions, screen.lines.join("\n")).toHaveLength(1);
    expect(mentions[0]).toMatch(/^✓ .*F16\.gguf \(verified\)$/);
    expect(screen.lines.filter((l) => /[█░]/.test(l)), screen.lines.join("\n")).toEqual([]);
  }, 150_000);
});
