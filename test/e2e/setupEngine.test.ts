import { describe, expect, it } from "vitest";
import { lastJson, sandbox, slm } from "../helpers/cli.js";

/**
 * `slm setup engine` builds node-llama-cpp's binding (minutes of compiling), which the test suite never
 * starts; what is checked here is that options of the other components are refused before anything runs.
 */
describe("slm setup engine", () => {
  const sb = sandbox();

  it.each([["--cpu"], ["--qlora"], ["--jobs", "2"]])("refuses %s with exit 2 before building anything", async (...flag) => {
    const r = await slm(["setup", "engine", ...flag, "--json"], sb);
    expect(r.exitCode, r.all).toBe(2);
    const err = lastJson(r.stdout).error!;
    expect(err.message).toContain(flag[0]);
    expect(err.message).toContain("slm setup engine");
    expect(r.all).not.toMatch(/\n\s+at /);
  });
});
