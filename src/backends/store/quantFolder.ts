import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { UsageError } from "../../core/errors.js";
import type { WeightQuantization } from "./types.js";

/**
 * How a Hugging Face folder's weights are quantized, from config.json's `quantization_config` (what
 * transformers, vLLM and llama.cpp's converter read) or, for older GPTQ checkpoints that have none, from
 * AutoGPTQ's `quantize_config.json`. Only the few KB of JSON are read, never the weights.
 */
export interface FolderQuantization {
  /** `quant_method` as the folder writes it ("gptq", "awq", "bitsandbytes", "fp8", …). */
  method: string;
  /** slm's description, for the methods slm runs (GPTQ and AWQ). */
  quantization?: WeightQuantization;
}

function readJson(file: string): Record<string, unknown> | undefined {
  if (!existsSync(file)) return undefined;
  try {
    const v = JSON.parse(readFileSync(file, "utf8")) as unknown;
    return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    // A broken config.json is reported by whatever reads the folder for real (inspectHfFolder).
    return undefined;
  }
}

const int = (v: unknown): number | undefined => (typeof v === "number" && Number.isInteger(v) ? v : undefined);
const bool = (v: unknown): boolean | undefined => (typeof v === "boolean" ? v : undefined);
const str = (v: unknown): string | undefined => (typeof v === "string" && v ? v : undefined);

function describe(method: string, q: Record<string, unknown>): WeightQuantization | undefined {
  // AWQ's own config files say w_bit / q_group_size; transformers' say bits / group_size.
  const bits = int(q.bits) ?? int(q.w_bit);
  const groupSize = int(q.group_size) ?? int(q.q_group_size) ?? -1;
  if (method === "gptq") {
    return {
      method: "gptq",
      bits: bits ?? 4,
      groupSize,
      descAct: bool(q.desc_act) ?? false,
      sym: bool(q.sym) ?? true,
      // llama.cpp's converter reads checkpoint_format only, and takes its absence as the classic "gptq".
      format: str(q.checkpoint_format) ?? "gptq",
    };
  }
  if (method === "awq") {
    return { method: "awq", bits: bits ?? 4, groupSize, zeroPoint: bool(q.zero_point) ?? true, format: str(q.version)?.toLowerCase() ?? "gemm" };
  }
  return undefined;
}

/** The folder's quantization as it declares it; undefined for plain (unquantized) weights. */
export function folderQuantization(dir: string): FolderQuantization | undefined {
  const config = readJson(path.join(dir, "config.json"));
  const qc = config?.quantization_config;
  if (typeof qc === "object" && qc !== null && !Array.isArray(qc)) {
    const q = qc as Record<string, unknown>;
    // AutoAWQ folders without quant_method but with its keys are AWQ; a dict without either is not a quantization.
    const method = (str(q.quant_method) ?? (q.w_bit !== undefined ? "awq" : undefined))?.toLowerCase();
    if (method) return { method, quantization: describe(method, q) };
  }
  // AutoGPTQ before transformers knew GPTQ wrote only quantize_config.json (bits, group_size, desc_act, sym).
  const legacy = readJson(path.join(dir, "quantize_config.json"));
  if (legacy && int(legacy.bits) !== undefined) {
    const method = (str(legacy.quant_method) ?? "gptq").toLowerCase();
    return { method, quantization: describe(method, legacy) };
  }
  return undefined;
}

/** GPTQ or AWQ packing of `dir`, for the registry's `quantization`; undefined for anything else. */
export function quantizationOf(dir: string): WeightQuantization | undefined {
  return folderQuantization(dir)?.quantization;
}

/**
 * Refuses what slm cannot turn into GGUF weights: quantization methods other than GPTQ and AWQ, and the
 * GPTQ/AWQ bit widths that neither llama.cpp's converter nor the dequantize recipe reads.
 */
export function assertConvertible(dir: string, shown = dir): FolderQuantization | undefined {
  const fq = folderQuantization(dir);
  if (!fq) return undefined;
  const q = fq.quantization;
  if (!q) {
    throw new UsageError(`${shown} holds ${fq.method}-quantized weights (quantization_config.quant_method "${fq.method}"); slm runs Hugging Face folders of plain, GPTQ or AWQ weights only.`, {
      hint: "Use the model's unquantized original (its Hugging Face repository without the quantization), or a GGUF of it.",
    });
  }
  if (q.method === "gptq" && ![2, 4, 8].includes(q.bits)) {
    throw new UsageError(`${shown} is a ${q.bits}-bit GPTQ checkpoint; llama.cpp's converter reads 2-, 4- and 8-bit GPTQ only.`, { hint: "Use a 4-bit GPTQ checkpoint, or the unquantized original." });
  }
  if (q.method === "gptq" && q.format !== "gptq" && q.format !== "gptq_v2") {
    throw new UsageError(`${shown} is a GPTQ checkpoint in the "${q.format}" format; llama.cpp's converter reads the "gptq" and "gptq_v2" formats only.`, { hint: "Use the unquantized original, or a GGUF of the model." });
  }
  if (q.method === "awq" && (q.bits !== 4 || q.format !== "gemm")) {
    throw new UsageError(`${shown} is an AWQ checkpoint of ${q.bits} bits in the "${q.format}" layout; slm dequantizes 4-bit AWQ in the GEMM layout only.`, { hint: "Use the unquantized original, or a GGUF of the model." });
  }
  return fq;
}
