import type { OnnxDtype } from "../onnx/layout.js";
import type { WeightsSource } from "../quantize/weightsSource.js";
import type { ModelEntry } from "../store/types.js";

/** The dtypes `slm export --format onnx` writes (transformers.js's names; onnx/layout.ts has them all). */
export const EXPORT_DTYPES = ["fp32", "fp16", "q8", "q4"] as const satisfies readonly OnnxDtype[];
export type ExportDtype = (typeof EXPORT_DTYPES)[number];

/** The ONNX opset the graph is exported at (onnxruntime 1.30 and onnxruntime-web both run 14–20). */
export const DEFAULT_OPSET = 17;

export interface ExportRequest {
  /** An HF folder, a registered HF model or fine-tune, a catalog alias or org/repo (pulled --format hf). */
  ref: string;
  format: "onnx";
  /** Default ["fp32"]. */
  dtypes?: ExportDtype[];
  /** Register under this name (default `<model>-onnx`); an existing ONNX export of the same source gains the dtypes. */
  out?: string;
  opset?: number;
  threads?: number;
}

/** A fine-tune that kept no merged weights: its PEFT adapter is merged into its base before the export. */
export interface MergeFirst {
  base: string;
  adapter: string;
}

export interface ExportPlan {
  request: ExportRequest;
  dtypes: ExportDtype[];
  opset: number;
  threads: number | null;
  source: WeightsSource;
  merge?: MergeFirst;
  name: string;
  /** The registered export the dtypes are added to, when there is one. */
  existing?: ModelEntry;
  /** Bytes of the source's weight files (for the free-space estimate). */
  sourceBytes: number;
  parameters?: number;
  contextLength?: number;
}

/** What recipes/export_onnx.py reports (docs/export.md, "Recipe protocol"). */
export interface ExportRecipeResult {
  output_dir: string;
  dtypes: ExportDtype[];
  /** Every variant in the folder afterwards. */
  present: OnnxDtype[];
  files: { dtype: ExportDtype; file: string; bytes: number; external_data: string | null }[];
  opset: number;
  architecture: string;
  model_type: string | null;
  layers: number;
  kv_heads: number;
  head_dim: number;
  parameters: number;
  chat_template: boolean;
  /** Largest |logit| difference against the torch model, relative to the largest logit, per dtype. */
  logit_diff: Partial<Record<ExportDtype, number>>;
  seconds: number;
}

export interface ExportResult {
  model: ModelEntry;
  /** The dtypes this run wrote. */
  added: ExportDtype[];
  /** True when they were added to an export that existed before. */
  addedToExisting: boolean;
  source: { name: string; path: string };
  recipe: ExportRecipeResult;
  seconds: number;
}
