import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { FIXTURE } from "../helpers/cli.js";
import { onnxExportPythonForTests } from "../helpers/python.js";

// An export has nothing to save: Ctrl+C (SIGINT from slm) stops recipes/export_onnx.py at once, even while
// it imports torch or loads the model, where the recipes' usual polling only looks between steps.
describe("export_onnx.py on SIGINT", () => {
  it("exits 130 within seconds of the signal during the model load, leaving nothing", async (ctx) => {
    const p = await onnxExportPythonForTests();
    if (!p.python) return ctx.skip(p.skip);
    const dir = mkdtempSync(path.join(tmpdir(), "slm-export-int-"));
    const config = path.join(dir, "config.json");
    writeFileSync(config, JSON.stringify({ model: path.join(FIXTURE, "hf"), output_dir: path.join(dir, "out"), dtypes: ["fp32"], threads: 1 }));
    const child = spawn(p.python, ["-u", "recipes/export_onnx.py", "--config", config], { env: { ...process.env, OMP_NUM_THREADS: "1" } });
    let sentAt = 0;
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (!sentAt && /"id":\s*"export:load",\s*"status":\s*"start"/.test(out)) {
        sentAt = performance.now();
        child.kill("SIGINT");
      }
    });
    const code = await new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
    const waited = performance.now() - sentAt;
    expect(sentAt, out).toBeGreaterThan(0);
    expect(code).toBe(130);
    // A signal is handled between bytecodes: a long C call (part of importing torch) may finish first. Before: ~10 s (the whole load).
    expect(waited).toBeLessThan(3000);
    expect(readdirSync(dir)).toEqual(["config.json"]);
  }, 120_000);
});
