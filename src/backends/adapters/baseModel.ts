/**
 * What the converter needs to know about the base model an adapter was trained on: its architecture
 * and attention head counts (llama's q/k rows are permuted by head), and whether it has a separate
 * output weight. PEFT adapters rarely carry that, so it comes from the base model's HF config.json or
 * from the GGUF model the adapter will run on.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { UsageError } from "../../core/errors.js";
import { slmPaths } from "../../core/paths.js";
import { readGgufHeader, type GgufValue } from "../gguf/reader.js";
import { readRef, repoCacheDir, snapshotFile } from "../store/hfCache.js";

export interface BaseModelInfo {
  /** GGUF architecture name ("llama"), or undefined when only an HF class is known that slm cannot map. */
  architecture?: string;
  /** The HF class (config.json "architectures"[0]) when the info came from a config. */
  hfArchitecture?: string;
  /** Attention heads (and key/value heads): llama's q/k permutation needs them. */
  heads?: number;
  kvHeads?: number;
  blocks?: number;
  /** The base ties lm_head to the embeddings, so an lm_head LoRA has no weight to apply to. */
  tiedEmbeddings?: boolean;
  /** GGUF tensor name → dims, when the info came from the GGUF the adapter will run on. */
  tensors?: Map<string, number[]>;
  /** The folder of the config.json it came from (the Python converter's --base). */
  configDir?: string;
  /** Where it came from, for messages. */
  source: string;
}

/** HF classes that llama.cpp's converter handles as LlamaModel (q/k permuted, standard names). */
const LLAMA_HF = new Set(["LlamaForCausalLM", "LLaMAForCausalLM", "MistralForCausalLM"]);

function fromConfigFile(file: string): BaseModelInfo {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  } catch (err) {
    throw new UsageError(`${file} is not a readable config.json: ${(err as Error).message}`);
  }
  const cfg = typeof raw.text_config === "object" && raw.text_config !== null ? { ...raw, ...(raw.text_config as Record<string, unknown>) } : raw;
  const hfArchitecture = Array.isArray(cfg.architectures) && typeof cfg.architectures[0] === "string" ? cfg.architectures[0] : undefined;
  const heads = cfg.n_heads ?? cfg.num_attention_heads;
  const kvHeads = cfg.n_kv_heads ?? cfg.num_key_value_heads ?? heads;
  const blocks = cfg.n_layers ?? cfg.num_hidden_layers ?? cfg.n_layer ?? cfg.num_layers;
  return {
    architecture: hfArchitecture && LLAMA_HF.has(hfArchitecture) ? "llama" : undefined,
    hfArchitecture,
    heads: Number.isInteger(heads) ? (heads as number) : undefined,
    kvHeads: Number.isInteger(kvHeads) ? (kvHeads as number) : undefined,
    blocks: Number.isInteger(blocks) ? (blocks as number) : undefined,
    tiedEmbeddings: cfg.tie_word_embeddings === true,
    configDir: path.dirname(file),
    source: file,
  };
}

/** `config` may be a config.json file or the folder holding it. */
export function baseFromConfig(config: string): BaseModelInfo {
  const file = existsSync(config) && statSync(config).isDirectory() ? path.join(config, "config.json") : config;
  if (!existsSync(file)) throw new UsageError(`Base model config not found: ${file}`);
  return fromConfigFile(file);
}

const int = (v: GgufValue | undefined) => (typeof v === "number" && Number.isInteger(v) ? v : undefined);

export function baseFromGguf(file: string): BaseModelInfo {
  const h = readGgufHeader(file);
  const arch = h.metadata.get("general.architecture");
  if (typeof arch !== "string") throw new UsageError(`${file} has no general.architecture.`);
  const heads = int(h.metadata.get(`${arch}.attention.head_count`));
  const kvHeads = int(h.metadata.get(`${arch}.attention.head_count_kv`)) ?? heads;
  const tensors = new Map(h.tensors.map((t) => [t.name, t.dims]));
  return { architecture: arch, heads, kvHeads, blocks: int(h.metadata.get(`${arch}.block_count`)), tiedEmbeddings: !tensors.has("output.weight"), tensors, source: file };
}

/** base_model_name_or_path as a local folder, or as a Hub repo already in the HF cache. */
function fromBaseModelName(name: string): BaseModelInfo | undefined {
  const local = path.resolve(name, "config.json");
  if (existsSync(local)) return fromConfigFile(local);
  if (!/^[\w.-]+\/[\w.-]+$/.test(name)) return undefined;
  const repoDir = repoCacheDir(slmPaths().hubCache, name);
  const commit = readRef(repoDir, "main");
  const cached = commit ? snapshotFile(repoDir, commit, "config.json") : undefined;
  return cached && existsSync(cached) ? fromConfigFile(cached) : undefined;
}

export interface BaseSources {
  baseConfig?: string;
  baseGguf?: string;
  /** adapter_config.json's base_model_name_or_path. */
  baseModelName?: string;
}

/**
 * An explicit config wins (checked against the GGUF's tensors when both are given); then the GGUF
 * the adapter will run on (for llama; other architectures prefer a config.json); then the adapter's
 * own base_model_name_or_path, if that is on this machine.
 */
export function findBaseModel(s: BaseSources, adapterDir: string): BaseModelInfo {
  if (s.baseConfig) {
    const cfg = baseFromConfig(s.baseConfig);
    // The GGUF too, when given: its tensor shapes let the converter check the adapter fits.
    const gguf = s.baseGguf ? baseFromGguf(s.baseGguf) : undefined;
    return gguf && gguf.architecture === cfg.architecture ? { ...cfg, tensors: gguf.tensors } : cfg;
  }
  const found = () => (s.baseModelName ? fromBaseModelName(s.baseModelName) : undefined);
  if (s.baseGguf) {
    const gguf = baseFromGguf(s.baseGguf);
    // Outside the llama family the Python converter needs a config.json, which a GGUF is not.
    return gguf.architecture === "llama" ? gguf : (found() ?? gguf);
  }
  const named = found();
  if (named) return named;
  const why = s.baseModelName ? `its base model ${s.baseModelName} is not on this machine` : "its adapter_config.json does not name its base model";
  throw new UsageError(`Cannot convert ${adapterDir} without knowing its base model: ${why}.`, {
    hint: "Load it onto its base model (slm run <base> --lora <adapter>), or pull the base model's HF files first (slm pull <repo> --format hf).",
  });
}
