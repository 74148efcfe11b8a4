import { existsSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import type { OnnxFolderInfo } from "../store/types.js";
import { type OnnxDtype, ONNX_DTYPES, dtypeOfFile, variantFile } from "./layout.js";

/**
 * The graph names a folder's onnx/ may hold, newest layout first: transformers.js and current Optimum
 * exports write `model*.onnx`; older Optimum exports wrote `decoder_model_merged*.onnx` (one graph with
 * and without the KV cache). A folder holding both is described by `model`.
 */
const BASES = ["model", "decoder_model_merged"] as const;

/** The ONNX files of a folder's onnx/ (names only), or [] when it has none. */
function onnxNames(dir: string): string[] {
  const sub = path.join(dir, "onnx");
  try {
    return statSync(sub).isDirectory() ? readdirSync(sub).filter((n) => n.endsWith(".onnx")) : [];
  } catch {
    return [];
  }
}

/** The variants of `base` among file names under onnx/, in the vocabulary's order. */
export function dtypesIn(names: readonly string[], base: string): OnnxDtype[] {
  const present = new Set(names.map((n) => dtypeOfFile(n, base)).filter((d): d is OnnxDtype => !!d));
  return ONNX_DTYPES.filter((d) => present.has(d));
}

/**
 * An ONNX model folder in the Optimum / transformers.js layout: config.json beside onnx/ with at least one
 * `model*.onnx` (or `decoder_model_merged*.onnx`) variant. Undefined for anything else.
 */
export function scanOnnxFolder(dir: string): OnnxFolderInfo | undefined {
  if (!existsSync(path.join(dir, "config.json"))) return undefined;
  return onnxInfoOf(onnxNames(dir));
}

/** The same from a list of paths under onnx/ (a Hub repository's listing, "onnx/model_q4.onnx"). */
export function onnxInfoOf(namesUnderOnnx: readonly string[]): OnnxFolderInfo | undefined {
  for (const base of BASES) {
    const dtypes = dtypesIn(namesUnderOnnx, base);
    if (dtypes.length > 0) return { dtypes, base };
  }
  return undefined;
}

/**
 * The external-data files of one variant: `onnx/model_q4.onnx_data`, `…onnx_data_1` (what torch.onnx and
 * Optimum write beside a graph over 2 GB), as paths relative to the folder.
 */
export function externalDataFiles(dir: string, dtype: OnnxDtype, base = "model"): string[] {
  const graph = path.basename(variantFile(dtype, base));
  try {
    return readdirSync(path.join(dir, "onnx")).filter((n) => isExternalDataOf(n, graph)).sort().map((n) => `onnx/${n}`);
  } catch {
    return [];
  }
}

/** "model_q4.onnx_data" and "model_q4.onnx_data_1" belong to "model_q4.onnx"; "model_q4f16.onnx_data" does not. */
export function isExternalDataOf(name: string, graph: string): boolean {
  return name === `${graph}_data` || name.startsWith(`${graph}_data_`);
}

/** Whether a folder also has Hugging Face weights (so it is an HF model unless ONNX is asked for). */
export function hasSafetensors(dir: string): boolean {
  try {
    return readdirSync(dir).some((n) => n.endsWith(".safetensors"));
  } catch {
    return false;
  }
}
