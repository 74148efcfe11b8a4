/** What the registry remembers about a model. Paths are absolute. */
export type ModelFormat = "gguf" | "hf";

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
  size: number;
  parameters?: number;
  contextLength?: number;
  architecture?: string;
  lineage: LineageStep[];
  /** GGUF LoRA adapters loaded on top of `path` ("base + adapter" models registered by fine-tuning). */
  adapters?: { path: string; scale: number }[];
  createdAt: string;
}

export interface Registry {
  version: 1;
  models: Record<string, ModelEntry>;
}
