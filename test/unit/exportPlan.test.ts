import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseDtypes, planExport } from "../../src/backends/export/plan.js";
import { lineageWithAdded, spaceNeeded } from "../../src/backends/export/run.js";
import { registerModel } from "../../src/backends/store/registry.js";
import type { ModelEntry } from "../../src/backends/store/types.js";
import { UsageError } from "../../src/core/errors.js";
import { FIXTURE } from "../helpers/cli.js";

const HF = path.join(FIXTURE, "hf");
const before = process.env.SLM_HOME;

beforeAll(() => {
  process.env.SLM_HOME = mkdtempSync(path.join(tmpdir(), "slm-export-plan-"));
});
afterAll(() => {
  if (before === undefined) delete process.env.SLM_HOME;
  else process.env.SLM_HOME = before;
});

const onnxEntry = (name: string, from: string, dtypes: ("fp32" | "q4")[]): ModelEntry => ({
  name, format: "onnx", path: `/x/${name}`, files: [], source: { type: "derived" }, size: 0, onnx: { dtypes, base: "model" },
  lineage: [{ from, method: "export-onnx", parameters: { dtypes }, at: "2026-01-01T00:00:00Z" }], createdAt: "2026-01-01T00:00:00Z",
});

describe("slm export's plan", () => {
  it("reads --dtype as a list, in the order the recipe writes them; fp32 by default", () => {
    expect(parseDtypes(undefined)).toEqual(["fp32"]);
    expect(parseDtypes(["q4,fp32", "Q8"])).toEqual(["fp32", "q8", "q4"]);
    expect(() => parseDtypes(["q4f16"])).toThrow(/--dtype q4f16: slm exports fp32, fp16, q8, q4/);
    expect(() => parseDtypes(["int4"])).toThrow(UsageError);
  });

  it("names the export <model>-onnx, and refuses an opset outside 14-20", async () => {
    const plan = await planExport({ ref: "tiny-arith", format: "onnx", dtypes: ["fp32", "q4"] });
    expect(plan).toMatchObject({ name: "tiny-arith-onnx", dtypes: ["fp32", "q4"], opset: 17, parameters: 3311872, contextLength: 256 });
    expect(plan.existing).toBeUndefined();
    // fp32 (4 B) + q4 (0.8 B) per parameter, plus the traced fp32 graph, plus 10 %.
    expect(spaceNeeded(plan)).toBe(Math.ceil(3311872 * (4 + 0.8 + 4) * 1.1));
    await expect(planExport({ ref: HF, format: "onnx", opset: 21 })).rejects.toThrow(/--opset 21: use 14 to 20/);
  });

  it("adds to an export of the same source; refuses another model's export and dtypes it has", async () => {
    await registerModel(onnxEntry("tiny-arith-onnx", "tiny-arith", ["fp32"]));
    const plan = await planExport({ ref: "tiny-arith", format: "onnx", dtypes: ["q4"] });
    expect(plan.existing?.name).toBe("tiny-arith-onnx");
    await expect(planExport({ ref: "tiny-arith", format: "onnx", dtypes: ["fp32"] })).rejects.toThrow(/tiny-arith-onnx already has fp32 \(onnx\/model\.onnx\)/);
    await registerModel(onnxEntry("other-onnx", "someone/else", ["fp32"]));
    await expect(planExport({ ref: "tiny-arith", format: "onnx", dtypes: ["q4"], out: "other-onnx" })).rejects.toThrow(/exported from someone\/else; adding tiny-arith's graphs to it would mix two models/);
  });

  it("takes BASE+PEFT-FOLDER (as eval does): the base's HF weights with the adapter merged first", async () => {
    const adapter = path.join(FIXTURE, "lora-sub");
    const plan = await planExport({ ref: `tiny-arith+${path.relative(process.cwd(), adapter)}`, format: "onnx", dtypes: ["q4"] });
    expect(plan.name).toBe("tiny-arith+lora-sub-onnx");
    expect(plan.merge?.adapter).toBe(adapter);
    expect(existsSync(path.join(plan.merge!.base, "config.json"))).toBe(true);
    // The lineage's source is a reference that exports the same again (a second dtype is added to it).
    expect(plan.source.from).toBe(`tiny-arith+${adapter}`);
    const gguf = path.join(FIXTURE, "gguf", "lora-sub-f32.gguf");
    await expect(planExport({ ref: `tiny-arith+${gguf}`, format: "onnx" })).rejects.toThrow(/is not a PEFT adapter folder: it has no adapter_config\.json/);
    await expect(planExport({ ref: `tiny-arith+${adapter}+${adapter}`, format: "onnx" })).rejects.toThrow(/an ONNX export merges one adapter/);
  });

  it("a dtype added to an export updates its one export step instead of adding a step per dtype", () => {
    const first = onnxEntry("tiny-arith-onnx", "tiny-arith", ["fp32"]).lineage;
    const q4 = { from: "tiny-arith", method: "export-onnx", parameters: { dtypes: ["q4"], seconds: 3 }, at: "2026-01-02T00:00:00Z" };
    const lineage = lineageWithAdded(first, q4, ["fp32", "q4"]);
    expect(lineage).toEqual([{ ...q4, parameters: { dtypes: ["fp32", "q4"], seconds: 3 } }]);
    // The step before an export (a fine-tune's merge) is kept behind it.
    const merge = { from: "tiny-arith", method: "merge-lora", parameters: {}, at: "2026-01-01T00:00:00Z" };
    expect(lineageWithAdded([...first, merge], q4, ["fp32", "q4"])).toHaveLength(2);
  });

  it("an unknown model's hint offers what export takes: a Hugging Face folder, not a .gguf file", async () => {
    const e = await planExport({ ref: "no-such-model-xyz", format: "onnx" }).catch((x: unknown) => x as UsageError);
    expect(e).toMatchObject({ message: 'Unknown model "no-such-model-xyz".' });
    expect(e.hint).toContain("or a local Hugging Face model folder.");
    expect(e.hint).not.toContain(".gguf");
  });
});
