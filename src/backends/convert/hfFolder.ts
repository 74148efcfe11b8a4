import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, statSync } from "node:fs";
import path from "node:path";
import { NotFoundError, UsageError } from "../../core/errors.js";
import { quantizationOf } from "../store/quantFolder.js";
import type { WeightQuantization } from "../store/types.js";

/**
 * What slm needs to know about a Hugging Face model folder before converting it: that it is one, what
 * it holds, and how big it is. Read from config.json and the safetensors headers only (a few KB), so a
 * wrong folder is refused in milliseconds, not after Python has started.
 */
export interface HfFolderInfo {
  dir: string;
  architecture?: string;
  modelType?: string;
  contextLength?: number;
  /** Weight files, in the order the converter reads them. */
  weights: string[];
  format: "safetensors" | "pytorch";
  /** From the safetensors headers; undefined for PyTorch .bin weights, which have no cheap header. */
  tensors?: number;
  parameters?: number;
  /** A SentencePiece tokenizer (tokenizer.model), which the converter reads with the sentencepiece module. */
  sentencepiece: boolean;
}

export function inspectHfFolder(dir: string): HfFolderInfo {
  if (!existsSync(dir)) throw new NotFoundError(`No such folder: ${dir}`);
  if (!statSync(dir).isDirectory()) throw new UsageError(`${dir} is not a folder; converting needs a Hugging Face model folder (config.json, weights, tokenizer).`);
  const configFile = path.join(dir, "config.json");
  if (!existsSync(configFile)) throw new UsageError(`${dir} is not a Hugging Face model folder: it has no config.json.`);
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(readFileSync(configFile, "utf8")) as Record<string, unknown>;
  } catch (err) {
    throw new UsageError(`${configFile} is not valid JSON: ${(err as Error).message}`);
  }
  const names = readdirSync(dir).sort();
  const safetensors = names.filter((n) => /^model(-\d+-of-\d+)?\.safetensors$/.test(n));
  const pytorch = names.filter((n) => /^pytorch_model(-\d+-of-\d+)?\.bin$/.test(n));
  if (safetensors.length === 0 && pytorch.length === 0) {
    const adapter = names.includes("adapter_config.json");
    throw new UsageError(`${dir} has no model weights (model*.safetensors or pytorch_model*.bin).`, {
      hint: adapter ? "It looks like a PEFT adapter: load it with `slm run <base> --lora <folder>`." : "Pull the full model with `slm pull <repo> --format hf`.",
    });
  }
  const architectures = Array.isArray(config.architectures) ? (config.architectures as unknown[]).filter((a): a is string => typeof a === "string") : [];
  const info: HfFolderInfo = {
    dir,
    architecture: architectures[0],
    modelType: typeof config.model_type === "string" ? config.model_type : undefined,
    contextLength: typeof config.max_position_embeddings === "number" ? config.max_position_embeddings : undefined,
    weights: (safetensors.length ? safetensors : pytorch).map((n) => path.join(dir, n)),
    format: safetensors.length ? "safetensors" : "pytorch",
    sentencepiece: names.includes("tokenizer.model"),
  };
  if (info.format === "safetensors") Object.assign(info, weightCounts(info.weights, quantizationOf(dir)));
  return info;
}

/**
 * Tensors and parameters as the model has them, from the safetensors headers. A GPTQ or AWQ linear is
 * stored as qweight (int32, 32/bits weights in each), qzeros, scales and g_idx: it counts as the one
 * weight tensor it stands for, of in × out parameters, as the converter's output will have it.
 */
export function weightCounts(files: string[], q?: WeightQuantization): { tensors: number; parameters: number } {
  let tensors = 0;
  let parameters = 0;
  const perInt = q ? 32 / q.bits : 1;
  for (const f of files) {
    for (const { name, shape } of safetensorsTensors(f)) {
      const n = shape.reduce((a, b) => a * b, 1);
      if (q && /\.(qzeros|scales|g_idx)$/.test(name)) continue;
      tensors++;
      parameters += q && name.endsWith(".qweight") ? n * perInt : n;
    }
  }
  return { tensors, parameters };
}

/** The tensor shapes in a safetensors file. */
export function safetensorsShapes(file: string): number[][] {
  return safetensorsTensors(file).map((t) => t.shape);
}

/** The tensors' names and shapes in a safetensors file: an 8-byte little-endian length, then that much JSON. */
export function safetensorsTensors(file: string): { name: string; shape: number[] }[] {
  const fd = openSync(file, "r");
  try {
    const size = statSync(file).size;
    const lenBuf = Buffer.alloc(8);
    if (size < 8 || readSync(fd, lenBuf, 0, 8, 0) !== 8) throw new UsageError(`${file} is not a safetensors file (too short).`);
    const len = Number(lenBuf.readBigUInt64LE(0));
    if (len <= 0 || len > 100e6 || 8 + len > size) throw new UsageError(`${file} is not a safetensors file (bad header length ${len}).`);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, 8);
    let header: Record<string, { shape?: unknown }>;
    try {
      header = JSON.parse(buf.toString("utf8")) as Record<string, { shape?: unknown }>;
    } catch {
      throw new UsageError(`${file} is not a safetensors file (its header is not JSON).`);
    }
    return Object.entries(header)
      .filter(([k]) => k !== "__metadata__")
      .map(([name, v]) => ({ name, shape: Array.isArray(v.shape) ? (v.shape as unknown[]).map(Number) : [] }));
  } finally {
    closeSync(fd);
  }
}
