/**
 * PEFT LoRA adapter → GGUF LoRA adapter, in TypeScript for the llama family (the same file, tensor for
 * tensor, as llama.cpp's convert_lora_to_gguf.py writes); other architectures go through that script
 * in the Python env (fallback.ts).
 */
import { mkdirSync } from "node:fs";
import path from "node:path";
import { emit, type BackendContext } from "../../core/events.js";
import { UsageError } from "../../core/errors.js";
import { storageErrorOf } from "../../core/storage.js";
import { GGML_TYPE, type OutType, OUT_TYPES, canQ8_0, encodeTensor } from "../gguf/quants.js";
import { type GgufMetaValue, writeGguf } from "../gguf/writer.js";
import { type BaseModelInfo, findBaseModel } from "./baseModel.js";
import { planLlama, type PlannedTensor } from "./llama.js";
import { modelIdComponents } from "./naming.js";
import { type PeftAdapter, readPeftAdapter } from "./peft.js";

export interface ConvertAdapterOptions {
  /** PEFT adapter folder (adapter_config.json + adapter_model.safetensors). */
  adapterDir: string;
  /** The .gguf file to write. */
  out: string;
  /** Default f32, as the script's. */
  outtype?: OutType;
  /** HF config.json (or its folder) of the base model, when the adapter folder lacks what is needed. */
  baseConfig?: string;
  /** The GGUF base model the adapter will run on: head counts, and a check that every adapted weight exists. */
  baseGguf?: string;
  /** general.name's source instead of the folder name (a Hub repo's name: its folder is a commit hash). */
  name?: string;
}

export interface ConvertAdapterResult {
  path: string;
  architecture: string;
  tensors: number;
  /** The alpha written (adapter.lora.alpha). */
  alpha: number;
  size: number;
  converter: "typescript" | "python";
}

const TYPE_OF: Record<OutType, number> = { f32: GGML_TYPE.F32, f16: GGML_TYPE.F16, bf16: GGML_TYPE.BF16, q8_0: GGML_TYPE.Q8_0 };

/** The tensor type gguf-py picks: norms F32; Q8_0 only for rows that split into 32-value blocks, else F16. */
function typeFor(t: PlannedTensor, outtype: OutType): number {
  if (t.keepF32 || t.dims.length <= 1) return GGML_TYPE.F32;
  if (outtype === "q8_0" && !canQ8_0(t.dims[0]!)) return GGML_TYPE.F16;
  return TYPE_OF[outtype];
}

/** gguf-py's adapter size: each pair counts as the full matrix it stands for, negated to mark it inexact. */
function adapterParams(plan: PlannedTensor[]): number {
  let total = 0;
  let lastA: PlannedTensor | undefined;
  for (const t of plan) {
    if (t.name.endsWith(".lora_a")) {
      lastA = t;
      continue;
    }
    const dims = t.name.endsWith(".lora_b") && lastA ? [lastA.dims[0]!, ...t.dims.slice(1)] : t.dims;
    total += dims.reduce((p, d) => p * d, 1);
  }
  return lastA ? -total : total;
}

/** The metadata convert_lora_to_gguf.py writes, in its order. */
function metadata(a: PeftAdapter, plan: PlannedTensor[], alpha: number, name: string): [string, GgufMetaValue][] {
  const str = (value: string): GgufMetaValue => ({ type: "string", value });
  const n = modelIdComponents(name, adapterParams(plan));
  const kv: [string, GgufMetaValue][] = [
    ["general.architecture", str("llama")],
    ["general.type", str("adapter")],
    ["adapter.type", str("lora")],
    ["general.name", str(n.name)],
  ];
  if (n.version) kv.push(["general.version", str(n.version)]);
  if (n.organization) kv.push(["general.organization", str(n.organization)]);
  if (n.finetune) kv.push(["general.finetune", str(n.finetune)]);
  if (n.basename) kv.push(["general.basename", str(n.basename)]);
  if (n.sizeLabel) kv.push(["general.size_label", str(n.sizeLabel)]);
  kv.push(["adapter.lora.alpha", { type: "f32", value: alpha }]);
  const tokens = a.config.aloraInvocationTokens;
  if (tokens) kv.push(["adapter.alora.invocation_tokens", { type: "array", itemType: "u32", values: tokens }]);
  kv.push(["general.quantization_version", { type: "u32", value: 2 }]);
  return kv;
}

/**
 * llama.cpp scales a LoRA by alpha / rank. Rank-stabilised LoRA (use_rslora) trains with alpha / √rank,
 * so the alpha written is alpha·√rank; the script writes alpha as is and gets such adapters wrong.
 */
function effectiveAlpha(a: PeftAdapter, ctx: BackendContext): number {
  if (!a.config.useRslora) return a.config.alpha;
  const alpha = a.config.alpha * Math.sqrt(a.config.rank);
  emit(ctx.onEvent, { type: "log", level: "info", message: `rank-stabilised LoRA: writing alpha ${a.config.alpha}·√${a.config.rank} = ${alpha} so that llama.cpp's alpha/rank scaling equals alpha/√rank` });
  return alpha;
}

function convertLlama(a: PeftAdapter, base: BaseModelInfo, o: ConvertAdapterOptions, outtype: OutType, ctx: BackendContext): ConvertAdapterResult {
  const plan = planLlama(a, base);
  const alpha = effectiveAlpha(a, ctx);
  const fallbackF16 = outtype === "q8_0" ? plan.filter((t) => typeFor(t, outtype) === GGML_TYPE.F16).length : 0;
  if (fallbackF16 > 0) emit(ctx.onEvent, { type: "log", level: "info", message: `${fallbackF16} tensor(s) have rows that are not a multiple of 32 long (the rank); they are stored as F16, as llama.cpp's converter does` });
  const tensors = plan.map((t) => {
    const type = typeFor(t, outtype);
    return { name: t.name, dims: t.dims, type, data: () => [encodeTensor(t.values(), type, t.dims)] };
  });
  mkdirSync(path.dirname(path.resolve(o.out)), { recursive: true });
  const size = writeGguf(o.out, metadata(a, plan, alpha, o.name ?? path.basename(a.dir)), tensors, { signal: ctx.signal });
  return { path: path.resolve(o.out), architecture: "llama", tensors: tensors.length, alpha, size, converter: "typescript" };
}

export async function convertPeftAdapter(o: ConvertAdapterOptions, ctx: BackendContext = {}): Promise<ConvertAdapterResult> {
  const outtype = o.outtype ?? "f32";
  if (!OUT_TYPES.includes(outtype)) throw new UsageError(`Unknown adapter output type ${outtype}; choose one of ${OUT_TYPES.join(", ")}.`);
  emit(ctx.onEvent, { type: "step", id: "convert-adapter", status: "start", title: `Converting the LoRA adapter ${o.adapterDir} to GGUF` });
  try {
    const adapter = readPeftAdapter(o.adapterDir);
    const base = findBaseModel({ baseConfig: o.baseConfig, baseGguf: o.baseGguf, baseModelName: adapter.config.baseModel }, adapter.dir);
    let r: ConvertAdapterResult;
    if (base.architecture === "llama") r = convertLlama(adapter, base, o, outtype, ctx);
    else {
      const { convertWithScript } = await import("./fallback.js");
      r = await convertWithScript({ ...o, outtype, adapter, base }, ctx);
    }
    // No output path here: callers write into work folders (`models/.tmp-<pid>-…`) that are renamed into
    // place later; the caller names the file where it ends up.
    emit(ctx.onEvent, { type: "step", id: "convert-adapter", status: "done", title: "Converted the LoRA adapter to GGUF", detail: `${r.architecture}, ${r.tensors} tensors, alpha ${r.alpha}, ${outtype}${r.converter === "python" ? ", with llama.cpp's convert_lora_to_gguf.py" : ""}` });
    return r;
  } catch (caught) {
    // The adapter is cached under SLM_HOME: a read-only or full one is named as such, not as a raw errno.
    const err = storageErrorOf(caught) ?? caught;
    emit(ctx.onEvent, { type: "step", id: "convert-adapter", status: "fail", title: "Converting the LoRA adapter", detail: (err as Error).message });
    throw err;
  }
}
