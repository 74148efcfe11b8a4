import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CancelledError, ExternalError } from "../../src/core/errors.js";
import { exec, probe } from "../../src/core/exec.js";

const posix = process.platform !== "win32";
const tmp = mkdtempSync(path.join(os.tmpdir(), "slm-exec-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe.runIf(posix)("exec", () => {
  it("returns the output and hands over each line as it arrives, \\r-terminated ones included", async () => {
    const lines: string[] = [];
    const r = await exec("sh", ["-c", "printf 'a\\nb\\rc\\n'; printf 'err\\n' >&2; printf tail"], { onLine: (l, s) => lines.push(`${s}:${l}`) });
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe("a\nb\rc\ntail");
    expect(r.stderr).toBe("err");
    expect(lines).toEqual(expect.arrayContaining(["stdout:a", "stdout:b", "stdout:c", "stdout:tail", "stderr:err"]));
  });

  it("turns a failure into an ExternalError with the command, the arguments and the tail of stderr", async () => {
    const script = "for i in $(seq 1 50); do echo line$i >&2; done; exit 3";
    const err = await exec("sh", ["-c", script], { tailLines: 5 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ExternalError);
    const e = err as ExternalError;
    expect(e.exitCode).toBe(6);
    expect(e.command).toBe("sh");
    expect(e.args).toEqual(["-c", script]);
    expect(e.stderrTail.split("\n")).toEqual(["line46", "line47", "line48", "line49", "line50"]);
    expect(e.message).toMatch(/^sh exited with code 3:/);
    expect(e.message).toContain("line50");
  });

  it("falls back to stdout for the tail when a tool prints its complaint there", async () => {
    const e = (await exec("sh", ["-c", "echo usage: nope; exit 1"]).catch((x: unknown) => x)) as ExternalError;
    expect(e.stderrTail).toBe("usage: nope");
  });

  it("accepts the exit codes it is told are fine", async () => {
    const r = await exec("sh", ["-c", "echo help; exit 1"], { okExitCodes: [0, 1] });
    expect(r).toMatchObject({ exitCode: 1, stdout: "help" });
  });

  it("keeps only a tail when buffering is off", async () => {
    const r = await exec("sh", ["-c", "seq 1 1000"], { buffer: false, tailLines: 3 });
    expect(r.stdout).toBe("998\n999\n1000");
  });

  it("says when a program does not exist", async () => {
    const e = (await exec(path.join(tmp, "nope"), []).catch((x: unknown) => x)) as ExternalError;
    expect(e).toBeInstanceOf(ExternalError);
    expect(e.message).toMatch(/does not exist/);
  });

  it("throws CancelledError when aborted, and with killTree ends the program's children too", async () => {
    const pidFile = path.join(tmp, "child.pid");
    const ctl = new AbortController();
    const run = exec("sh", ["-c", `sleep 30 & echo $! > ${pidFile}; echo started; wait`], {
      signal: ctl.signal,
      killTree: true,
      onLine: (l) => {
        if (l === "started") ctl.abort();
      },
    });
    await expect(run).rejects.toBeInstanceOf(CancelledError);
    const child = Number(readFileSync(pidFile, "utf8"));
    for (let i = 0; i < 50 && alive(child); i++) await new Promise((r) => setTimeout(r, 100));
    expect(alive(child)).toBe(false);
  });

  it("probe reports a failure as data, with the reason and stderr", async () => {
    const r = await probe("sh", ["-c", "echo boom >&2; exit 2"]);
    expect(r.ok).toBe(false);
    expect(r.error).toBe("exited with code 2: boom");
    const t = await probe("sh", ["-c", "exec sleep 5"], { timeoutMs: 200 });
    expect(t).toMatchObject({ ok: false, timedOut: true });
    expect(t.error).toMatch(/timed out/);
    const ok = await probe("sh", ["-c", "echo fine"]);
    expect(ok).toMatchObject({ ok: true, stdout: "fine" });
  });
});
