import { cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { recipeCalibration } from "../../src/backends/quantize/calibration.js";
import { planWeights, settingsOf } from "../../src/backends/quantize/weights.js";
import { packedSizeEstimate, recipeConfig, writtenQuantization } from "../../src/backends/quantize/weightsRun.js";
import { resolveWeightsSource } from "../../src/backends/quantize/weightsSource.js";
import { registerModel } from "../../src/backends/store/registry.js";
import type { ModelEntry } from "../../src/backends/store/types.js";
import { UsageError } from "../../src/core/errors.js";
import { FIXTURE } from "../helpers/cli.js";

const HF = path.join(FIXTURE, "hf");
const GGUF = path.join(FIXTURE, "gguf", "tiny-arith-f16.gguf");
const TRAIN = path.join(FIXTURE, "data", "add-train.jsonl");
const TEXT = path.join(FIXTURE, "data", "eval-text.txt");
const before = process.env.SLM_HOME;
let home: string;

beforeAll(() => {
  home = mkdtempSync(path.join(tmpdir(), "slm-weights-plan-"));
  process.env.SLM_HOME = home;
});
afterAll(() => {
  if (before === undefined) delete process.env.SLM_HOME;
  else process.env.SLM_HOME = before;
});

const gguf = (name: string, extra: Partial<ModelEntry> = {}): ModelEntry => ({
  name,
  format: "gguf",
  path: GGUF,
  files: [{ path: GGUF, size: 1 }],
  source: { type: "derived" },
  size: 1,
  lineage: [],
  createdAt: "2026-01-01T00:00:00Z",
  ...extra,
});

async function usage(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UsageError);
  return `${(err as UsageError).message}\nhint: ${(err as UsageError).hint ?? ""}`;
}

describe("GPTQ/AWQ settings", () => {
  it("fills the documented defaults per method", () => {
    expect(settingsOf({ ref: "x", method: "gptq" })).toMatchObject({ method: "gptq", bits: 4, groupSize: 128, descAct: false, sym: true, damp: 0.01, samples: 128, seqLen: 512, device: "auto" });
    expect(settingsOf({ ref: "x", method: "awq" })).toMatchObject({ method: "awq", bits: 4, groupSize: 128, zeroPoint: true, descAct: false, sym: false });
    // For a GGUF type the search simulates llama.cpp's blocks of 32 at the type's bit width.
    expect(settingsOf({ ref: "x", method: "awq", type: "Q5_K_M" })).toMatchObject({ bits: 5, groupSize: 32 });
  });

  it("refuses what a method cannot write", () => {
    expect(() => settingsOf({ ref: "x", method: "gptq", bits: 3 })).toThrow(/--bits 3 is not available with --method gptq/);
    expect(() => settingsOf({ ref: "x", method: "awq", bits: 8 })).toThrow(/--bits 8 is not available with --method awq/);
    expect(() => settingsOf({ ref: "x", method: "gptq", type: "Q4_K_M" })).toThrow(/--type names a llama.cpp type/);
    expect(() => settingsOf({ ref: "x", method: "awq", type: "Q2_K" })).toThrow(/4- to 8-bit/);
    expect(() => settingsOf({ ref: "x", method: "awq", type: "IQ4_XS" })).toThrow(/4- to 8-bit/);
    expect(() => settingsOf({ ref: "x", method: "gptq", groupSize: 0 })).toThrow(/--group-size/);
    expect(() => settingsOf({ ref: "x", method: "gptq", damp: 0 })).toThrow(/--damp/);
  });
});

describe("the source of GPTQ/AWQ: unquantized Hugging Face weights", () => {
  it("a folder, and the built-in model's HF weights", async () => {
    expect(await resolveWeightsSource(HF)).toMatchObject({ from: HF, source: { format: "hf", path: HF } });
    const builtin = await resolveWeightsSource("tiny-arith");
    expect(builtin).toMatchObject({ from: "tiny-arith", source: { name: "tiny-arith", format: "hf" } });
    expect(readFileSync(path.join(builtin.source.path, "config.json"), "utf8")).toContain("LlamaForCausalLM");
  });

  it("a GGUF file or a registered GGUF: refused, saying how to get the HF weights", async () => {
    expect(await usage(resolveWeightsSource(GGUF))).toMatch(/is a GGUF model; GPTQ and AWQ need the original Hugging Face weights[\s\S]*slm pull <org\/repo> --format hf/);
    await registerModel(gguf("plain-gguf"));
    expect(await usage(resolveWeightsSource("plain-gguf"))).toMatch(/plain-gguf is a GGUF model/);
  });

  it("an ONNX export: refused, pointing at the HF weights it came from", async () => {
    await registerModel(gguf("some-onnx", { format: "onnx", path: HF, onnx: { dtypes: ["fp32"], base: "model" } }));
    expect(await usage(resolveWeightsSource("some-onnx"))).toMatch(/some-onnx is an ONNX model; GPTQ and AWQ need the original Hugging Face weights[\s\S]*slm info some-onnx/);
  });

  it("a GPTQ folder (quantization_config): refused as already quantized", async () => {
    const dir = path.join(home, "q-folder");
    cpSync(HF, dir, { recursive: true });
    const config = JSON.parse(readFileSync(path.join(dir, "config.json"), "utf8")) as Record<string, unknown>;
    writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...config, quantization_config: { quant_method: "gptq", bits: 4 } }));
    expect(await usage(resolveWeightsSource(dir))).toMatch(/already quantized \(GPTQ\)/);
  });

  it("a fine-tune: its merged weights when it kept them, else how to get them", async () => {
    // `<base>+<name>` as slm finetune registers it: base GGUF + adapter, run folder in $SLM_HOME/runs.
    await registerModel(gguf("tiny-arith+sub", { adapters: [{ path: "/x/adapter.gguf", scale: 1 }] }));
    expect(await usage(resolveWeightsSource("tiny-arith+sub"))).toMatch(/kept no merged weights[\s\S]*--merge/);
    const merged = path.join(home, "runs", "tiny-arith+sub", "merged");
    mkdirSync(path.dirname(merged), { recursive: true });
    cpSync(HF, merged, { recursive: true });
    const s = await resolveWeightsSource("tiny-arith+sub");
    expect(s).toMatchObject({ from: "tiny-arith+sub", source: { name: "tiny-arith+sub", format: "hf", path: merged } });
    // …and the `-merged` GGUF, whose merge step names the folder.
    await registerModel(gguf("tiny-arith+sub-merged", { lineage: [{ from: "tiny-arith+sub", method: "merge-lora", parameters: { mergedHf: merged }, at: "2026-01-01T00:00:00Z" }] }));
    expect(await resolveWeightsSource("tiny-arith+sub-merged")).toMatchObject({ from: "tiny-arith+sub-merged", source: { path: merged } });
  });

  it("a full fine-tune (finetune --full, distill --full): the trained HF folder its run kept", async () => {
    // As slm finetune --full registers it: its own F16 GGUF, no adapter, the trained folder in the lineage.
    const model = path.join(home, "runs", "tiny-arith+full", "model");
    mkdirSync(path.dirname(model), { recursive: true });
    cpSync(HF, model, { recursive: true });
    for (const [name, method] of [["tiny-arith+full", "finetune-full"], ["tiny-arith+kd", "distill"]] as const) {
      await registerModel(gguf(name, { lineage: [{ from: HF, method, parameters: { hf: HF, hfModel: model, peftAdapter: null }, at: "2026-01-01T00:00:00Z" }] }));
      expect(await resolveWeightsSource(name)).toMatchObject({ from: name, source: { name, format: "hf", path: model } });
    }
    // A LoRA distillation (hfModel null) has no such folder, and a GGUF quantized from the full fine-tune is not those weights.
    await registerModel(gguf("tiny-arith+kd-lora", { lineage: [{ from: HF, method: "distill", parameters: { hf: HF, hfModel: null, peftAdapter: "/x" }, at: "2026-01-01T00:00:00Z" }] }));
    expect(await usage(resolveWeightsSource("tiny-arith+kd-lora"))).toMatch(/is a GGUF model/);
    await registerModel(gguf("tiny-arith+full-Q8_0", { lineage: [{ from: "tiny-arith+full", method: "quantize", parameters: {}, at: "2026-01-01T00:00:01Z" }, { from: HF, method: "finetune-full", parameters: { hfModel: model }, at: "2026-01-01T00:00:00Z" }] }));
    expect(await usage(resolveWeightsSource("tiny-arith+full-Q8_0"))).toMatch(/is a GGUF model/);
  });
});

describe("reading back what the recipe wrote", () => {
  const folder = (qc: Record<string, unknown>) => {
    const dir = mkdtempSync(path.join(home, "written-"));
    writeFileSync(path.join(dir, "config.json"), JSON.stringify({ model_type: "llama", quantization_config: qc }));
    return dir;
  };
  const gptq4 = settingsOf({ ref: "x", method: "gptq" });

  it("registers the quantization the checkpoint declares when it is what was asked", () => {
    const dir = folder({ quant_method: "gptq", bits: 4, group_size: 128, desc_act: false, sym: true, checkpoint_format: "gptq" });
    expect(writtenQuantization(dir, gptq4)).toEqual({ method: "gptq", bits: 4, groupSize: 128, descAct: false, sym: true, format: "gptq" });
    const awq = folder({ quant_method: "awq", version: "gemm", bits: 4, group_size: 128, zero_point: true });
    expect(writtenQuantization(awq, settingsOf({ ref: "x", method: "awq" }))).toEqual({ method: "awq", bits: 4, groupSize: 128, zeroPoint: true, format: "gemm" });
  });

  it("refuses a checkpoint that says something else, or nothing", () => {
    expect(() => writtenQuantization(folder({ quant_method: "gptq", bits: 8, group_size: 128, desc_act: false, sym: true }), gptq4)).toThrow(/not what was asked/);
    expect(() => writtenQuantization(folder({ quant_method: "gptq", bits: 4, group_size: 128, desc_act: true, sym: true }), gptq4)).toThrow(/not what was asked/);
    const plain = mkdtempSync(path.join(home, "plain-"));
    writeFileSync(path.join(plain, "config.json"), "{}");
    expect(() => writtenQuantization(plain, gptq4)).toThrow(/not what was asked/);
  });
});

describe("planning GPTQ/AWQ", () => {
  it("names the result, caps the window at the model's context and writes the recipe's config", async () => {
    const plan = await planWeights({ ref: HF, method: "gptq", calibration: TRAIN });
    expect(plan.name).toBe("tiny-arith-GPTQ-4bit");
    expect(plan.settings.seqLen).toBe(256);
    expect(plan.calibration.info).toMatchObject({ format: "chat-jsonl", examples: 9000 });
    const cfg = recipeConfig(plan, "/out", "/calib.jsonl", "packed");
    expect(cfg).toEqual({
      task: "quantize", model: HF, output_dir: "/out", method: "gptq", output: "packed", bits: 4, group_size: 128, desc_act: false, sym: true, damp: 0.01,
      zero_point: false, calibration: { file: "/calib.jsonl", format: "chat-jsonl" }, samples: 128, seq_len: 256, device: "auto", threads: null,
    });
    // 3.3M parameters, 164k of them in the embeddings and output layer (2 × 320 × 256, fp16): ~1.9 MB.
    expect(packedSizeEstimate(plan)).toBeGreaterThan(1.5e6);
    expect(packedSizeEstimate(plan)).toBeLessThan(2.5e6);
    expect((await planWeights({ ref: HF, method: "awq", calibration: TEXT })).name).toBe("tiny-arith-AWQ-4bit");
    expect((await planWeights({ ref: HF, method: "awq", type: "q4_k_m", calibration: TEXT })).name).toBe("tiny-arith-AWQ-Q4_K_M");
  });

  it("refuses a group size that does not divide the model's widths, for AWQ and GPTQ, before Python starts", async () => {
    expect(await usage(planWeights({ ref: HF, method: "awq", groupSize: 100, calibration: TEXT }))).toMatch(/--group-size 100 does not divide the model's hidden_size \(256\)/);
    // A GPTQ checkpoint with a last, shorter group is one vLLM refuses to load: refused here too.
    expect(await usage(planWeights({ ref: HF, method: "gptq", groupSize: 100, calibration: TEXT }))).toMatch(/--group-size 100 does not divide the model's hidden_size \(256\): GPTQ needs whole groups/);
    // Larger than a layer's input is a partial group as well (tiny-arith: 256 and 768 wide).
    expect(await usage(planWeights({ ref: HF, method: "gptq", groupSize: 512, calibration: TEXT }))).toMatch(/hidden_size \(256\)/);
    expect((await planWeights({ ref: HF, method: "gptq", groupSize: 64, calibration: TEXT })).settings.groupSize).toBe(64);
    expect((await planWeights({ ref: HF, method: "gptq", groupSize: -1, calibration: TEXT })).settings.groupSize).toBe(-1);
  });

  it("hands the recipe canonical JSONL: every accepted shape as {messages} or {text}", () => {
    const { content, info } = recipeCalibration(TRAIN, { name: "m", hasChatTemplate: true });
    const first = JSON.parse(content.split("\n")[0]!) as { messages: { role: string; content: string }[] };
    expect(first.messages.map((m) => m.role)).toEqual(["user", "assistant"]);
    expect(info.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(() => recipeCalibration(TRAIN, { name: "m", hasChatTemplate: false })).toThrow(/no chat template/);
    expect(recipeCalibration(TEXT, { name: "m", hasChatTemplate: false }).info.format).toBe("text");
  });
});
