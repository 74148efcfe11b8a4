/**
 * Reading a PEFT LoRA adapter folder: adapter_config.json and adapter_model.safetensors, grouped into
 * (lora_A, lora_B) pairs per base weight the way convert_lora_to_gguf.py groups them. Whatever a GGUF
 * LoRA cannot express is refused here with the reason, instead of being converted wrongly.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { NotFoundError, UsageError } from "../../core/errors.js";
import { readSafetensors, type SafetensorsFile, type SafetensorsTensor } from "./safetensors.js";

export interface PeftConfig {
  alpha: number;
  rank: number;
  useRslora: boolean;
  /** Per-module ranks (rank_pattern): the rank of each pair is read from its tensors anyway. */
  rankPattern: boolean;
  baseModel?: string;
  /** Activated-LoRA invocation token ids, written as adapter.alora.invocation_tokens. */
  aloraInvocationTokens?: number[];
  modulesToSave: string[];
}

export interface LoraPair {
  /** The base weight's HF name, e.g. model.layers.0.self_attn.q_proj.weight. */
  base: string;
  a: SafetensorsTensor;
  b: SafetensorsTensor;
}

export interface PeftAdapter {
  dir: string;
  config: PeftConfig;
  weights: SafetensorsFile;
  pairs: LoraPair[];
  /** Full tensors kept as they are (layer norms that mergekit-extract-lora adds). */
  norms: { base: string; tensor: SafetensorsTensor }[];
}

export const ADAPTER_CONFIG = "adapter_config.json";
export const ADAPTER_WEIGHTS = "adapter_model.safetensors";

const nonEmpty = (v: unknown) => v !== undefined && v !== null && v !== false && !(Array.isArray(v) && v.length === 0) && !(typeof v === "object" && !Array.isArray(v) && Object.keys(v as object).length === 0);

function refuse(dir: string, what: string, hint?: string): UsageError {
  return new UsageError(`${dir}: ${what}`, { hint });
}

export function readPeftConfig(dir: string): PeftConfig {
  const file = path.join(dir, ADAPTER_CONFIG);
  if (!existsSync(file)) {
    throw new UsageError(`${dir} is not a PEFT adapter folder: it has no ${ADAPTER_CONFIG}.`, { hint: "--lora takes a GGUF LoRA file, a PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) or a Hub repo of one." });
  }
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  } catch (err) {
    throw new UsageError(`${file} is not valid JSON: ${(err as Error).message}`);
  }
  const type = raw.peft_type;
  if (type !== "LORA") throw refuse(dir, `this is a ${String(type ?? "non-PEFT")} adapter; only LoRA adapters (peft_type "LORA") can become GGUF adapters.`);
  const alpha = raw.lora_alpha;
  const rank = raw.r;
  if (typeof alpha !== "number" || !Number.isFinite(alpha)) throw refuse(dir, `${ADAPTER_CONFIG} has no numeric lora_alpha.`);
  if (typeof rank !== "number" || !Number.isInteger(rank) || rank <= 0) throw refuse(dir, `${ADAPTER_CONFIG} has no positive integer r.`);
  if (raw.use_dora === true) throw refuse(dir, "DoRA adapters (use_dora) cannot be expressed as a GGUF LoRA.", "Merge the adapter into the base model instead.");
  // convert_lora_to_gguf.py ignores these and writes a wrongly scaled adapter; refusing is better.
  if (nonEmpty(raw.alpha_pattern)) throw refuse(dir, "per-module alphas (alpha_pattern) cannot be expressed: a GGUF LoRA has one alpha.", "Merge the adapter into the base model instead.");
  if (raw.use_rslora === true && nonEmpty(raw.rank_pattern)) throw refuse(dir, "rank-stabilised LoRA (use_rslora) with per-module ranks (rank_pattern) cannot be expressed with one alpha.");
  if (raw.fan_in_fan_out === true) throw refuse(dir, "fan_in_fan_out adapters (GPT-2 style Conv1D layers) are not supported.");
  if (nonEmpty(raw.target_parameters)) throw refuse(dir, "LoRA on parameters (target_parameters, e.g. MoE experts) is not supported.");
  if (nonEmpty(raw.layer_replication)) throw refuse(dir, "layer_replication adapters are not supported.");
  if (raw.lora_bias === true) throw refuse(dir, "LoRA biases (lora_bias) cannot be expressed as a GGUF LoRA.");
  const tokens = raw.alora_invocation_tokens;
  if (tokens != null && !(Array.isArray(tokens) && tokens.every((t) => Number.isInteger(t) && t >= 0))) throw refuse(dir, "alora_invocation_tokens must be a list of token ids.");
  if (!nonEmpty(tokens) && typeof raw.invocation_string === "string" && raw.invocation_string) {
    throw refuse(dir, "this activated LoRA gives an invocation_string but no alora_invocation_tokens; tokenizing it needs the base model's tokenizer.", "Add alora_invocation_tokens (the token ids) to adapter_config.json.");
  }
  return {
    alpha,
    rank,
    useRslora: raw.use_rslora === true,
    rankPattern: nonEmpty(raw.rank_pattern),
    baseModel: typeof raw.base_model_name_or_path === "string" && raw.base_model_name_or_path ? raw.base_model_name_or_path : undefined,
    aloraInvocationTokens: nonEmpty(tokens) ? (tokens as number[]) : undefined,
    modulesToSave: Array.isArray(raw.modules_to_save) ? raw.modules_to_save.map(String) : [],
  };
}

/** convert_lora_to_gguf.py's get_base_tensor_name, for the tensors it accepts. */
function baseName(name: string): string {
  return name.replaceAll("base_model.model.", "").replaceAll(".lora_A.weight", ".weight").replaceAll(".lora_B.weight", ".weight");
}

/** Reads and pairs the adapter's tensors, in safetensors' sorted-name order (as the script sees them). */
export function readPeftAdapter(dirArg: string): PeftAdapter {
  const dir = path.resolve(dirArg);
  if (!existsSync(dir)) throw new NotFoundError(`LoRA adapter not found: ${dir}`);
  if (!statSync(dir).isDirectory()) throw new UsageError(`${dir} is not a folder.`);
  const config = readPeftConfig(dir);
  const file = path.join(dir, ADAPTER_WEIGHTS);
  if (!existsSync(file)) {
    const bin = existsSync(path.join(dir, "adapter_model.bin"));
    throw refuse(dir, bin ? "the weights are in adapter_model.bin (a Python pickle), which slm does not read." : `it has no ${ADAPTER_WEIGHTS}.`, bin ? "Save the adapter with safetensors (PEFT's default: save_pretrained(..., safe_serialization=True))." : undefined);
  }
  const weights = readSafetensors(file);
  const names = weights.tensors.map((t) => t.name).sort();
  const byName = new Map(weights.tensors.map((t) => [t.name, t]));
  const partial = new Map<string, { a?: SafetensorsTensor; b?: SafetensorsTensor }>();
  const norms: PeftAdapter["norms"] = [];
  for (const name of names) {
    const t = byName.get(name)!;
    const isA = name.includes(".lora_A.weight");
    const isB = name.includes(".lora_B.weight");
    if (name.includes(".lora_embedding_A") || name.includes(".lora_embedding_B")) {
      throw refuse(dir, `it has a LoRA on the token embeddings (${name}), which this converter does not support.`, "Leave embed_tokens out of target_modules, or merge the adapter into the base model.");
    }
    if (!isA && !isB) {
      if (name.includes(".base_layer.weight")) continue;
      if (name.includes("_layernorm") || name.includes(".norm")) {
        norms.push({ base: baseName(name), tensor: t });
        continue;
      }
      const saved = config.modulesToSave.length > 0 ? ` (modules_to_save: ${config.modulesToSave.join(", ")})` : "";
      throw refuse(dir, `${name} is a full tensor, not a LoRA pair${saved}; a GGUF LoRA adapter cannot carry it.`, /embed_tokens|lm_head/.test(name) ? "The embeddings were trained (often because tokens were added); merge the adapter into the base model and convert that instead." : "Merge the adapter into the base model and convert that instead.");
    }
    const base = baseName(name);
    const p = partial.get(base) ?? {};
    if (isA) p.a = t;
    else p.b = t;
    partial.set(base, p);
  }
  const pairs: LoraPair[] = [];
  for (const [base, p] of partial) {
    if (!p.a || !p.b) throw refuse(dir, `${base} has a lora_${p.a ? "B" : "A"} tensor missing.`);
    pairs.push({ base, a: p.a, b: p.b });
  }
  if (pairs.length === 0) throw refuse(dir, "its weights hold no LoRA tensors.");
  return { dir, config, weights, pairs, norms };
}
