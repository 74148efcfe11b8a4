import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inspectHfFolder } from "../../src/backends/convert/hfFolder.js";
import { changedFiles, sourceFiles } from "../../src/backends/store/conversions.js";
import { assertConvertible, folderQuantization, quantizationOf } from "../../src/backends/store/quantFolder.js";
import { resolveModel } from "../../src/backends/store/resolve.js";
import { UsageError } from "../../src/core/errors.js";

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(path.join(tmpdir(), "slm-quantfolder-unit-"));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function safetensors(file: string, header: Record<string, unknown>): void {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(file, Buffer.concat([len, json]));
}

/** A folder with config.json (plus extra files), and a safetensors header naming `tensors`. */
function folder(name: string, config: Record<string, unknown>, extra: Record<string, unknown> = {}, tensors: Record<string, number[]> = { "model.embed_tokens.weight": [8, 4] }): string {
  const dir = path.join(tmp, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "config.json"), JSON.stringify({ architectures: ["LlamaForCausalLM"], model_type: "llama", ...config }));
  for (const [f, v] of Object.entries(extra)) writeFileSync(path.join(dir, f), JSON.stringify(v));
  safetensors(path.join(dir, "model.safetensors"), Object.fromEntries(Object.entries(tensors).map(([k, shape]) => [k, { dtype: "I32", shape, data_offsets: [0, 0] }])));
  return dir;
}

describe("quantizationOf", () => {
  it("reads a GPTQ quantization_config as transformers writes it", () => {
    const dir = folder("gptq", { quantization_config: { quant_method: "gptq", bits: 4, group_size: 128, desc_act: true, sym: false, damp_percent: 0.01, checkpoint_format: "gptq_v2" } });
    expect(quantizationOf(dir)).toEqual({ method: "gptq", bits: 4, groupSize: 128, descAct: true, sym: false, format: "gptq_v2" });
  });

  it("takes a missing checkpoint_format as the classic gptq one, as llama.cpp's converter does", () => {
    const dir = folder("gptq-noformat", { quantization_config: { quant_method: "gptq", bits: 8, group_size: -1 } });
    expect(quantizationOf(dir)).toEqual({ method: "gptq", bits: 8, groupSize: -1, descAct: false, sym: true, format: "gptq" });
  });

  it("reads an older AutoGPTQ folder's quantize_config.json when config.json has no quantization_config", () => {
    const dir = folder("autogptq", {}, { "quantize_config.json": { bits: 4, group_size: 32, desc_act: false, sym: true } });
    expect(quantizationOf(dir)).toEqual({ method: "gptq", bits: 4, groupSize: 32, descAct: false, sym: true, format: "gptq" });
  });

  it("reads AWQ's config, in transformers' words and in AutoAWQ's (w_bit, q_group_size, version GEMM)", () => {
    const hf = folder("awq", { quantization_config: { quant_method: "awq", version: "gemm", bits: 4, group_size: 64, zero_point: true } });
    expect(quantizationOf(hf)).toEqual({ method: "awq", bits: 4, groupSize: 64, zeroPoint: true, format: "gemm" });
    const autoawq = folder("autoawq", { quantization_config: { w_bit: 4, q_group_size: 128, zero_point: false, version: "GEMM" } });
    expect(quantizationOf(autoawq)).toEqual({ method: "awq", bits: 4, groupSize: 128, zeroPoint: false, format: "gemm" });
  });

  it("is undefined for plain weights, and names other methods without describing them", () => {
    expect(quantizationOf(folder("plain", { torch_dtype: "float16" }))).toBeUndefined();
    const bnb = folder("bnb", { quantization_config: { quant_method: "bitsandbytes", load_in_4bit: true } });
    expect(quantizationOf(bnb)).toBeUndefined();
    expect(folderQuantization(bnb)).toEqual({ method: "bitsandbytes", quantization: undefined });
  });
});

describe("assertConvertible", () => {
  it("refuses what neither llama.cpp's converter nor the dequantize recipe reads, saying which method or width", () => {
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ["ct", { quant_method: "compressed-tensors" }, /holds compressed-tensors-quantized weights .*plain, GPTQ or AWQ weights only/],
      ["fp8", { quant_method: "fp8" }, /holds fp8-quantized weights/],
      ["gptq3", { quant_method: "gptq", bits: 3, group_size: 128 }, /3-bit GPTQ checkpoint; llama.cpp's converter reads 2-, 4- and 8-bit GPTQ only/],
      ["gptq-marlin", { quant_method: "gptq", bits: 4, group_size: 128, checkpoint_format: "marlin" }, /"marlin" format/],
      ["awq-gemv", { quant_method: "awq", bits: 4, group_size: 128, version: "gemv" }, /GEMM layout only/],
    ];
    for (const [name, qc, message] of cases) {
      const dir = folder(`refused-${name}`, { quantization_config: qc });
      expect(() => assertConvertible(dir), name).toThrow(UsageError);
      expect(() => assertConvertible(dir), name).toThrow(message);
    }
    expect(assertConvertible(folder("ok-gptq", { quantization_config: { quant_method: "gptq", bits: 2, group_size: 128 } }))?.method).toBe("gptq");
    expect(assertConvertible(folder("ok-plain", {}))).toBeUndefined();
  });
});

describe("GPTQ/AWQ folders in the registry's terms", () => {
  it("resolveModel of a GPTQ folder gives format gptq and its quantization; a plain folder stays hf", () => {
    const dir = folder("resolve-gptq", { quantization_config: { quant_method: "gptq", bits: 4, group_size: 128 } });
    const e = resolveModel(dir);
    expect(e.format).toBe("gptq");
    expect(e.quantization).toMatchObject({ method: "gptq", bits: 4, groupSize: 128 });
    expect(resolveModel(folder("resolve-plain", {})).format).toBe("hf");
  });

  it("counts a packed linear as its in × out weights, not as int32 words plus zeros, scales and g_idx", () => {
    // A 64-in, 32-out linear at 4 bits, group 16: qweight [64·4/32, 32], qzeros [4, 32·4/32], scales [4, 32], g_idx [64].
    const tensors = { "l.qweight": [8, 32], "l.qzeros": [4, 4], "l.scales": [4, 32], "l.g_idx": [64], "norm.weight": [32] };
    const gptq = folder("count-gptq", { quantization_config: { quant_method: "gptq", bits: 4, group_size: 16 } }, {}, tensors);
    expect(inspectHfFolder(gptq)).toMatchObject({ tensors: 2, parameters: 64 * 32 + 32 });
    // AWQ GEMM: qweight [in, out·4/32].
    const awq = folder("count-awq", { quantization_config: { quant_method: "awq", bits: 4, group_size: 16, version: "gemm" } }, {}, { "l.qweight": [64, 4], "l.qzeros": [4, 4], "l.scales": [4, 32] });
    expect(inspectHfFolder(awq)).toMatchObject({ tensors: 1, parameters: 64 * 32 });
  });
});

describe("a conversion's record of its source files", () => {
  it("notices a rewritten, resized, added or removed file, and nothing else", () => {
    const dir = folder("fingerprint", {});
    writeFileSync(path.join(dir, "README.md"), "about");
    const before = sourceFiles(dir);
    expect(before.map((f) => f.file)).toEqual(["config.json", "model.safetensors"]);
    expect(changedFiles(before, sourceFiles(dir))).toEqual([]);
    writeFileSync(path.join(dir, "README.md"), "a README does not decide the GGUF");
    expect(changedFiles(before, sourceFiles(dir))).toEqual([]);
    // Same size, new time: rewritten in place (a retrained model of the same shape).
    const t = new Date(Date.now() + 60_000);
    utimesSync(path.join(dir, "model.safetensors"), t, t);
    writeFileSync(path.join(dir, "tokenizer.json"), "{}");
    expect(changedFiles(before, sourceFiles(dir))).toEqual(["model.safetensors", "tokenizer.json"]);
    rmSync(path.join(dir, "config.json"));
    expect(changedFiles(before, sourceFiles(dir))).toEqual(["config.json", "model.safetensors", "tokenizer.json"]);
  });
});
