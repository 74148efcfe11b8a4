import { existsSync } from "node:fs";
import { fileTypeName } from "./fileTypes.js";
import { tensorBytes } from "./ggmlTypes.js";
import { type GgufHeader, type GgufValue, notGguf, readGgufHeader } from "./reader.js";

/** What a GGUF LoRA adapter says about itself (general.type "adapter"). */
export interface GgufAdapterSummary {
  /** adapter.type: "lora" (or "alora", activated LoRA). */
  kind: string;
  /** adapter.lora.alpha; llama.cpp scales the adapter by alpha / rank. */
  alpha?: number;
  /** The smaller side of the lora_a tensors: one rank, or the list when they differ. */
  rank?: number | number[];
  /** The base weights it adapts, by GGUF name without the layer ("attn_q", "ffn_down"…). */
  targets: string[];
  /** general.base_model.0.*: the model it was trained on, when the converter knew. */
  base?: string;
}

/** The facts about a GGUF file that the registry and `slm info` show, read from its header only. */
export interface GgufSummary {
  architecture: string;
  /** general.type: "model", or "adapter" for LoRA adapters. */
  type?: string;
  name?: string;
  parameters: number;
  contextLength?: number;
  embeddingLength?: number;
  blockCount?: number;
  fileType?: string;
  quantizationVersion?: number;
  hasChatTemplate: boolean;
  chatTemplate?: string;
  tokenizer?: string;
  vocabSize?: number;
  tensorCount: number;
  splitCount: number;
  ggufVersion: number;
  adapter?: GgufAdapterSummary;
}

const SPLIT = /-(\d{5})-of-(\d{5})\.gguf$/i;

/** A short file holds less than its tensors say: compare each tensor's end with the file size. */
function assertComplete(file: string, h: GgufHeader): void {
  for (const t of h.tensors) {
    const end = h.dataOffset + t.offset + (tensorBytes(t.type, t.dims) ?? 1);
    if (end > h.fileSize) {
      throw notGguf(file, `it is truncated: tensor ${t.name} ends at byte ${end}, the file has ${h.fileSize}`);
    }
  }
}

/** Reads one GGUF file's header and checks that the file holds every tensor it lists. */
export function checkGgufFile(file: string): GgufHeader {
  const h = readGgufHeader(file);
  assertComplete(file, h);
  return h;
}

/**
 * The paths llama.cpp opens for a model file: every part of a split model (`-00001-of-00003.gguf`,
 * named after the first, in its folder), first part first; the file alone otherwise.
 */
export function splitPartPaths(file: string): string[] {
  const m = SPLIT.exec(file);
  if (!m) return [file];
  return Array.from({ length: Number(m[2]) }, (_, i) => file.replace(SPLIT, `-${String(i + 1).padStart(5, "0")}-of-${m[2]}.gguf`));
}

/** All parts of a split model, each of which must exist. */
function partsOf(file: string): string[] {
  const parts = splitPartPaths(file);
  for (const p of parts) if (!existsSync(p)) throw notGguf(file, `split part ${p} is missing`);
  return parts;
}

const str = (v: GgufValue | undefined) => (typeof v === "string" ? v : undefined);
const num = (v: GgufValue | undefined) => (typeof v === "number" ? v : typeof v === "bigint" ? Number(v) : undefined);

/** Reads and checks the header of a model or adapter (all parts of a split model). */
export async function readGgufSummary(file: string): Promise<GgufSummary> {
  const parts = partsOf(file);
  const headers = parts.map((p) => readGgufHeader(p));
  headers.forEach((h, i) => assertComplete(parts[i]!, h));
  const meta = headers[0]!.metadata;
  const arch = str(meta.get("general.architecture")) ?? "unknown";
  const tokens = meta.get("tokenizer.ggml.tokens");
  const template = str(meta.get("tokenizer.chat_template"));
  const tensors = headers.flatMap((h) => h.tensors);
  return {
    architecture: arch,
    type: str(meta.get("general.type")),
    name: str(meta.get("general.name")),
    parameters: tensors.reduce((sum, t) => sum + t.dims.reduce((p, d) => p * d, 1), 0),
    contextLength: num(meta.get(`${arch}.context_length`)),
    embeddingLength: num(meta.get(`${arch}.embedding_length`)),
    blockCount: num(meta.get(`${arch}.block_count`)),
    fileType: fileTypeName(num(meta.get("general.file_type"))),
    quantizationVersion: num(meta.get("general.quantization_version")),
    hasChatTemplate: template !== undefined,
    chatTemplate: template,
    tokenizer: str(meta.get("tokenizer.ggml.model")),
    vocabSize: typeof tokens === "object" ? tokens.length : num(meta.get(`${arch}.vocab_size`)),
    tensorCount: tensors.length,
    splitCount: parts.length,
    ggufVersion: headers[0]!.version,
    ...(str(meta.get("general.type")) === "adapter" ? { adapter: adapterSummary(meta, tensors) } : {}),
  };
}

function adapterSummary(meta: GgufHeader["metadata"], tensors: GgufHeader["tensors"]): GgufAdapterSummary {
  const loraA = tensors.filter((t) => t.name.endsWith(".lora_a"));
  const ranks = [...new Set(loraA.map((t) => Math.min(...t.dims)))].sort((a, b) => a - b);
  const targets = [...new Set(loraA.map((t) => t.name.replace(/^blk\.\d+\./, "").replace(/\.weight\.lora_a$/, "")))].sort();
  const base = str(meta.get("general.base_model.0.name")) ?? str(meta.get("general.base_model.0.repo_url"));
  return {
    kind: str(meta.get("adapter.type")) ?? "lora",
    alpha: num(meta.get("adapter.lora.alpha")),
    rank: ranks.length === 1 ? ranks[0] : ranks.length > 1 ? ranks : undefined,
    targets,
    ...(base ? { base } : {}),
  };
}
