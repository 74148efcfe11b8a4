import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { onnxExportPythonForTests } from "../helpers/python.js";

// recipes/export_onnx.py on tiny-arith (test/python/test_onnx_export.py): the layout read with the onnx package,
// and onnxruntime's own greedy loop on the exported files against transformers' generate, fp32, q4, q8 and fp16.
// It exports the model five times, so it runs here, beside test/python's discovery run, which skips it.
describe("the ONNX export recipe on tiny-arith", () => {
  it("writes the transformers.js layout, and onnxruntime answers as transformers does", async (ctx) => {
    const p = await onnxExportPythonForTests();
    if (!p.python) return ctx.skip(p.skip);
    const r = spawnSync(p.python, ["-m", "unittest", "-v", "test_onnx_export"], {
      cwd: "test/python",
      encoding: "utf8",
      timeout: 280_000,
      env: { ...process.env, SLM_ONNX_EXPORT_TESTS: "1", PYTHONDONTWRITEBYTECODE: "1", OMP_NUM_THREADS: "1" },
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/\nOK/);
    expect(r.stderr).not.toMatch(/skipped/);
  }, 300_000);
});
