import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { llamaCppPython } from "../../src/backends/python/llamaScripts.js";
import { finetunePythonForTests } from "../helpers/python.js";

// The GPTQ recipe on tiny-arith (test/python/test_gptq_model.py): GPTQ against round-to-nearest on held-out
// windows, Ctrl+C, and llama.cpp's convert_hf_to_gguf.py as the independent reader of its checkpoints (the
// converter slm runs, checked out from node-llama-cpp's bundle into a throwaway SLM_HOME). They quantize the model
// about ten times, so they run here, beside test/python's discovery run (recipesPython.test.ts), which skips them.
const home = mkdtempSync(path.join(tmpdir(), "slm-gptq-model-"));
afterAll(() => rmSync(home, { recursive: true, force: true }));

describe("the GPTQ recipe on tiny-arith", () => {
  it("beats round-to-nearest, stops cleanly on Ctrl+C, and llama.cpp's converter reads exactly its weights", async (ctx) => {
    const p = await finetunePythonForTests();
    if (!p.python) return ctx.skip(p.skip);
    const src = await llamaCppPython({}, { ...process.env, SLM_HOME: home });
    const r = spawnSync(p.python, ["-m", "unittest", "-v", "test_gptq_model"], {
      cwd: "test/python",
      encoding: "utf8",
      timeout: 280_000,
      env: { ...process.env, SLM_GPTQ_MODEL_TESTS: "1", LLAMA_CPP_DIR: src.dir, PYTHONDONTWRITEBYTECODE: "1", OMP_NUM_THREADS: "1" },
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/\nOK/);
    expect(r.stderr).not.toMatch(/skipped/);
  }, 300_000);
});
