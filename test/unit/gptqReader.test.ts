import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { llamaCppPython } from "../../src/backends/python/llamaScripts.js";
import { finetunePythonForTests } from "../helpers/python.js";

// llama.cpp's convert_hf_to_gguf.py as the independent reader of the GPTQ recipe's checkpoints
// (test/python/test_gptq_reader.py): the converter slm runs, checked out from node-llama-cpp's bundle into a
// throwaway SLM_HOME. test/python's discovery run (recipesPython.test.ts) skips it, as LLAMA_CPP_DIR is unset there.
const home = mkdtempSync(path.join(tmpdir(), "slm-gptq-reader-"));
afterAll(() => rmSync(home, { recursive: true, force: true }));

describe("GPTQ checkpoints read by llama.cpp's converter", () => {
  it("convert to F32 weights identical to the recipe's own dequantization", async (ctx) => {
    const p = await finetunePythonForTests();
    if (!p.python) return ctx.skip(p.skip);
    const src = await llamaCppPython({}, { ...process.env, SLM_HOME: home });
    const r = spawnSync(p.python, ["-m", "unittest", "-v", "test_gptq_reader"], {
      cwd: "test/python",
      encoding: "utf8",
      timeout: 280_000,
      env: { ...process.env, LLAMA_CPP_DIR: src.dir, PYTHONDONTWRITEBYTECODE: "1", OMP_NUM_THREADS: "1" },
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/\nOK/);
    expect(r.stderr).not.toMatch(/skipped/);
  }, 300_000);
});
