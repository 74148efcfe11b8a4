import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { planEval } from "../../src/backends/eval/plan.js";
import { registerModel } from "../../src/backends/store/registry.js";
import type { ModelEntry } from "../../src/backends/store/types.js";

const before = process.env.SLM_HOME;
let root: string;

beforeAll(() => {
  root = mkdtempSync(path.join(tmpdir(), "slm-eval-refs-"));
  process.env.SLM_HOME = path.join(root, "home");
});
afterAll(() => {
  if (before === undefined) delete process.env.SLM_HOME;
  else process.env.SLM_HOME = before;
});

describe("planEval model references", () => {
  // `slm export tiny-arith+sub --format onnx` registers "tiny-arith+sub-onnx"; its variants are named
  // "tiny-arith+sub-onnx:q4", which must not be read as the model "tiny-arith" plus an adapter "sub-onnx:q4".
  it("a registered name with '+' keeps its :dtype suffix (an exported fine-tune's variants)", async () => {
    const dir = path.join(root, "sub-onnx");
    mkdirSync(path.join(dir, "onnx"), { recursive: true });
    writeFileSync(path.join(dir, "config.json"), JSON.stringify({ model_type: "llama", architectures: ["LlamaForCausalLM"] }));
    for (const f of ["model.onnx", "model_q4.onnx"]) writeFileSync(path.join(dir, "onnx", f), "x");
    const entry: ModelEntry = {
      name: "tiny-arith+sub-onnx", format: "onnx", path: dir, files: [], size: 1, lineage: [], createdAt: "2026-01-01T00:00:00Z",
      source: { type: "derived" }, onnx: { dtypes: ["fp32", "q4"], base: "model" },
    };
    await registerModel(entry);
    const task = path.join(root, "t.jsonl");
    writeFileSync(task, `${JSON.stringify({ messages: [{ role: "user", content: "1+1" }, { role: "assistant", content: "2" }] })}\n`);
    const plan = await planEval({ models: ["tiny-arith+sub-onnx:fp32", "tiny-arith+sub-onnx:q4"], tasks: [task] });
    expect(plan.models.map((m) => [m.label, m.entry.name, m.entry.dtype, m.extraAdapters.length])).toEqual([
      ["tiny-arith+sub-onnx:fp32", "tiny-arith+sub-onnx", "fp32", 0],
      ["tiny-arith+sub-onnx:q4", "tiny-arith+sub-onnx", "q4", 0],
    ]);
  });
});
