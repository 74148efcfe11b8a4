/** What the registry remembers about a model. Paths are absolute. */
/**
 * gguf: a llama.cpp file. hf: an unquantized Hugging Face folder. gptq / awq: a Hugging Face folder of
 * GPTQ or AWQ packed weights (`quantization_config` in its config.json), for GPU servers; slm runs those
 * through a GGUF converted from them once. onnx: an ONNX folder in the Optimum / transformers.js layout
 * (config.json, tokenizer.json, onnx/model*.onnx), run by onnxruntime.
 */
export type ModelFormat = "gguf" | "hf" | "gptq" | "awq" | "onnx";

/** What an ONNX folder holds (onnx/layout.ts names the dtypes). */
export interface OnnxFolderInfo {
  /** The variants present under onnx/, e.g. ["fp32", "q4"]. */
  dtypes: import("../onnx/layout.js").OnnxDtype[];
  /** "model" (current exports) or "decoder_model_merged" (older Optimum exports). */
  base: string;
}

/** What a GPTQ or AWQ folder's `quantization_config` says, in slm's words. */
export interface WeightQuantization {
  method: "gptq" | "awq";
  bits: number;
  /** -1: one group per output channel (per-channel scales). */
  groupSize: number;
  /** GPTQ act-order (`desc_act`). */
  descAct?: boolean;
  /** GPTQ symmetric grid. */
  sym?: boolean;
  /** AWQ zero point. */
  zeroPoint?: boolean;
  /** GPTQ `checkpoint_format` ("gptq" = zeros stored minus one, "gptq_v2"); AWQ `version` ("gemm"). */
  format?: string;
}

export interface StoredFile {
  /** Absolute path (for pulled models: the snapshot symlink in the HF cache). */
  path: string;
  /** Path inside the source repository, when it came from one. */
  repoPath?: string;
  size: number;
  sha256?: string;
  /** Git blob sha1, for small non-LFS files. */
  gitOid?: string;
}

export type ModelSource =
  | { type: "hub"; repo: string; revision: string; commit: string; endpoint: string }
  | { type: "builtin" }
  | { type: "local" }
  | { type: "derived" };

/** One step that produced this model from another (quantize, finetune, merge…); empty for pulled models. */
export interface LineageStep {
  from: string;
  method: string;
  parameters: Record<string, unknown>;
  at: string;
}

export interface ModelEntry {
  name: string;
  format: ModelFormat;
  /** The file to load (first split for split GGUFs) or the model folder for HF weights. */
  path: string;
  files: StoredFile[];
  source: ModelSource;
  quant?: string;
  /** For gptq/awq folders: how the weights are packed. */
  quantization?: WeightQuantization;
  /** For onnx folders: the variants present. */
  onnx?: OnnxFolderInfo;
  /**
   * For onnx folders, set by resolution only (never stored): the variant a reference asked for
   * (`NAME:q4`); the runtime loads it instead of the default.
   */
  dtype?: import("../onnx/layout.js").OnnxDtype;
  size: number;
  parameters?: number;
  contextLength?: number;
  architecture?: string;
  lineage: LineageStep[];
  /** GGUF LoRA adapters loaded on top of `path` ("base + adapter" models registered by fine-tuning). */
  adapters?: { path: string; scale: number }[];
  /** Results of `slm eval`, newest last: one per task file and settings (a rerun replaces its record). */
  evals?: EvalRecord[];
  createdAt: string;
}

/** One stored `slm eval` result: what was measured, on which data (by content hash), and when. */
export interface EvalRecord {
  kind: "generate" | "choice" | "perplexity" | "kld";
  /** Short name shown in tables (the task file's name without .jsonl, "perplexity", "kld"). */
  name: string;
  /** Absolute path of the task or text file, as given the last time this content was scored. */
  file: string;
  /** sha256 of that file's content when it was evaluated: with kind and settings, what identifies a record. */
  sha256: string;
  /** e.g. accuracy, accuracy_low, accuracy_high; acc, acc_norm; ppl, ppl_error; kld_mean, same_top. */
  metrics: Record<string, number>;
  /** Questions scored, or tokens for perplexity and KLD. */
  n: number;
  /** What else decides the numbers: --limit, --match, --max-tokens, sampling, --ctx, the KLD base. */
  settings: Record<string, string | number | boolean>;
  at: string;
}

export interface Registry {
  version: 1;
  models: Record<string, ModelEntry>;
  /** Eval results of built-in models, which ship with slm and have no entry in `models`. */
  builtinEvals?: Record<string, EvalRecord[]>;
}
