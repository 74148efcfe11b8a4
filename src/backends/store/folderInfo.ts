import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { UsageError } from "../../core/errors.js";
import { safetensorsShapes, weightCounts } from "../convert/hfFolder.js";
import { quantizationOf } from "./quantFolder.js";
import type { StoredFile } from "./types.js";

/**
 * What `slm info` shows about a Hugging Face model folder or a PEFT adapter folder, from config.json,
 * adapter_config.json and the safetensors headers only (a few KB): never the weights themselves.
 */

export interface HfFolderSummary {
  architecture?: string;
  modelType?: string;
  /** From the safetensors headers; undefined for PyTorch .bin weights, which have no cheap header. */
  parameters?: number;
  tensors?: number;
  weights: "safetensors" | "pytorch" | "none";
  /** The dtype the weights are stored in (config.json's torch_dtype / dtype). */
  dtype?: string;
  contextLength?: number;
  hiddenSize?: number;
  layers?: number;
  vocabSize?: number;
  /** tokenizer.json or tokenizer.model (SentencePiece); undefined when the folder has neither. */
  tokenizer?: string;
  hasChatTemplate: boolean;
}

export interface PeftSummary {
  path: string;
  size: number;
  /** peft_type: "LORA" for the adapters slm runs. */
  peftType: string;
  /** base_model_name_or_path: the model it was trained on. */
  base?: string;
  rank?: number;
  alpha?: number;
  /** target_modules: the layers it adapts ("all-linear", or names such as q_proj). */
  targets: string[];
  taskType?: string;
  useRslora: boolean;
  useDora: boolean;
  /** Tensors in adapter_model.safetensors. */
  tensors?: number;
}

function readJson(file: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  } catch (err) {
    throw new UsageError(`${file} is not valid JSON: ${(err as Error).message}`);
  }
}

const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : undefined);
const text = (v: unknown) => (typeof v === "string" && v ? v : undefined);

/** Every regular file under `dir` (symlinks followed, as in an HF-cache snapshot), with its size. */
export function folderFiles(dir: string, depth = 3): StoredFile[] {
  const out: StoredFile[] = [];
  for (const name of readdirSync(dir).sort()) {
    if (name.startsWith(".")) continue;
    const full = path.join(dir, name);
    let st;
    try {
      st = statSync(full);
    } catch {
      continue; // a dangling snapshot link: the blob is gone
    }
    if (st.isDirectory()) {
      if (depth > 1) out.push(...folderFiles(full, depth - 1));
    } else if (st.isFile()) out.push({ path: full, size: st.size });
  }
  return out;
}

export function isPeftFolder(dir: string): boolean {
  return existsSync(path.join(dir, "adapter_config.json")) && !existsSync(path.join(dir, "config.json"));
}

export function summariseHfFolder(dir: string): HfFolderSummary {
  const config = readJson(path.join(dir, "config.json"));
  // Multimodal and some newer configs keep the language model's sizes under text_config.
  const textConfig = typeof config.text_config === "object" && config.text_config !== null ? (config.text_config as Record<string, unknown>) : {};
  const pick = (...keys: string[]) => keys.map((k) => num(config[k]) ?? num(textConfig[k])).find((v) => v !== undefined);
  const names = readdirSync(dir);
  const safetensors = names.filter((n) => /^model(-\d+-of-\d+)?\.safetensors$/.test(n)).sort();
  const pytorch = names.some((n) => /^pytorch_model(-\d+-of-\d+)?\.bin$/.test(n));
  const summary: HfFolderSummary = {
    architecture: Array.isArray(config.architectures) ? text(config.architectures[0]) : undefined,
    modelType: text(config.model_type),
    weights: safetensors.length > 0 ? "safetensors" : pytorch ? "pytorch" : "none",
    dtype: text(config.torch_dtype) ?? text(config.dtype),
    contextLength: pick("max_position_embeddings", "n_positions", "seq_length"),
    hiddenSize: pick("hidden_size", "n_embd", "d_model"),
    layers: pick("num_hidden_layers", "n_layer", "num_layers"),
    vocabSize: pick("vocab_size"),
    tokenizer: names.includes("tokenizer.json") ? "tokenizer.json" : names.includes("tokenizer.model") ? "SentencePiece (tokenizer.model)" : undefined,
    hasChatTemplate: names.includes("chat_template.jinja") || names.includes("chat_template.json") || hasTemplateIn(path.join(dir, "tokenizer_config.json")),
  };
  if (safetensors.length > 0) Object.assign(summary, weightCounts(safetensors.map((f) => path.join(dir, f)), quantizationOf(dir)));
  return summary;
}

function hasTemplateIn(file: string): boolean {
  if (!existsSync(file)) return false;
  try {
    const t = (JSON.parse(readFileSync(file, "utf8")) as { chat_template?: unknown }).chat_template;
    return typeof t === "string" || Array.isArray(t);
  } catch {
    return false;
  }
}

export function summarisePeftFolder(dir: string): PeftSummary {
  const config = readJson(path.join(dir, "adapter_config.json"));
  const targets = config.target_modules;
  const weights = path.join(dir, "adapter_model.safetensors");
  return {
    path: dir,
    size: folderFiles(dir).reduce((a, f) => a + f.size, 0),
    peftType: text(config.peft_type) ?? "unknown",
    base: text(config.base_model_name_or_path),
    rank: num(config.r),
    alpha: num(config.lora_alpha),
    targets: typeof targets === "string" ? [targets] : Array.isArray(targets) ? targets.map(String).sort() : [],
    taskType: text(config.task_type),
    useRslora: config.use_rslora === true,
    useDora: config.use_dora === true,
    tensors: existsSync(weights) ? safetensorsShapes(weights).length : undefined,
  };
}
