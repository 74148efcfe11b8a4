import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { finetunePythonForTests } from "../helpers/python.js";

// The recipes' pure-Python parts (events, config validation, data rendering/masking/packing, exit codes) are
// tested by test/python with plain python3; torch, transformers and peft are not needed. With a Python that has
// them (SLM_TEST_PYTHON), the same suite also runs its torch tests (chunked loss, accumulation, schedule,
// exact resume from a checkpoint); test/gpu covers the rest.
const python = spawnSync("python3", ["--version"]);

function unittest(interpreter: string): { status: number | null; stderr: string } {
  return spawnSync(interpreter, ["-m", "unittest", "discover", "-s", "test/python"], {
    encoding: "utf8",
    timeout: 240_000,
    // One torch thread: tests run two files at once on two cores.
    env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1", OMP_NUM_THREADS: "1" },
  });
}

describe.skipIf(python.status !== 0)("Python recipes without the ML stack", () => {
  it("pass test/python's unittest suite", () => {
    const r = unittest("python3");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/\nOK/);
  }, 150_000);
});

describe("Python recipes with torch, transformers and peft", () => {
  it("pass test/python's unittest suite with its torch tests", async (ctx) => {
    const p = await finetunePythonForTests();
    if (!p.python) return ctx.skip(p.skip);
    const r = unittest(p.python);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/\nOK/);
  }, 300_000);
});
