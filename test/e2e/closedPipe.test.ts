import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { BIN } from "../helpers/cli.js";

/** Runs slm with its stdout a pipe that is already closed when it writes (`slm … | head` after head exits). */
function withClosedStdout(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    child.stdout.destroy();
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stderr }));
  });
}

describe("slm writing to a closed pipe", () => {
  it("stops quietly, without node's EPIPE stack trace", async () => {
    for (const args of [["--help"], ["run", "--help"], ["list", "--catalog"]]) {
      const r = await withClosedStdout(args);
      expect(r.stderr, args.join(" ")).not.toMatch(/EPIPE|Unhandled|at .*\.js:\d+/);
      expect(r.code, args.join(" ")).toBe(0);
    }
  });
});
