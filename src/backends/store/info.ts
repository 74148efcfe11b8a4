import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { NotFoundError } from "../../core/errors.js";
import { type GgufSummary, readGgufSummary } from "../gguf/summary.js";
import { type HfFolderSummary, type PeftSummary, isPeftFolder, summariseHfFolder, summarisePeftFolder } from "./folderInfo.js";
import { conversionsOf } from "./conversions.js";
import { type OnnxSummary, summariseOnnxFolder } from "./onnxInfo.js";
import type { OnnxDtype } from "../onnx/layout.js";
import { scanOnnxFolder } from "../onnx/scan.js";
import { hasModel } from "./registry.js";
import { resolveModel } from "./resolve.js";
import type { ModelEntry, WeightQuantization } from "./types.js";

export interface ModelInfo {
  model: ModelEntry;
  /** Read from the file's header now, so it reflects the file on disk (`adapter` set for a LoRA adapter). */
  gguf?: GgufSummary;
  /** For Hugging Face weights (GPTQ/AWQ folders too): config.json and the safetensors headers. */
  hf?: HfFolderSummary;
  /** For an ONNX folder: its variants (files, sizes, opsets) and the graph's inputs and outputs. */
  onnx?: OnnxSummary;
  /** For HF weights whose folder also holds an ONNX export: its variants (a dtype asked for loads those instead). */
  alsoOnnx?: OnnxDtype[];
  /** For a GPTQ/AWQ folder: how its weights are packed. */
  quantization?: WeightQuantization;
  /** For Hugging Face weights: the GGUF slm converted them to (and runs), once there is one. */
  converted?: ConvertedGguf;
}

export interface ConvertedGguf {
  name: string;
  path: string;
  /** false when the folder changed since the conversion (run/eval/serve then refuse it until it is redone). */
  current: boolean;
  /** The folder's files that changed since. */
  changed?: string[];
}

/** A PEFT adapter folder is not a model: it is described on its own. */
export interface AdapterInfo {
  peft: PeftSummary;
}

export async function modelInfo(ref: string, o: { dtype?: string } = {}): Promise<ModelInfo | AdapterInfo> {
  const local = path.resolve(ref);
  if (!hasModel(ref) && existsSync(local) && statSync(local).isDirectory() && isPeftFolder(local)) return { peft: summarisePeftFolder(local) };
  const model = resolveModel(ref, o);
  if (!existsSync(model.path)) {
    throw new NotFoundError(`The files of ${model.name} are missing (${model.path}).`, { hint: `Run \`slm pull ${model.name}\` to fetch them again, or \`slm rm ${model.name}\`.` });
  }
  if (model.format === "onnx") return { model, hf: summariseHfFolder(model.path), onnx: summariseOnnxFolder(model.path, model.onnx, model.dtype) };
  if (model.format !== "gguf") {
    const c = conversionsOf(model)[0];
    const converted = c && { name: c.entry.name, path: c.entry.path, current: c.changed.length === 0, ...(c.changed.length ? { changed: c.changed } : {}) };
    const alsoOnnx = scanOnnxFolder(model.path)?.dtypes;
    return { model, hf: summariseHfFolder(model.path), ...(model.quantization ? { quantization: model.quantization } : {}), ...(converted ? { converted } : {}), ...(alsoOnnx ? { alsoOnnx } : {}) };
  }
  return { model, gguf: await readGgufSummary(model.path) };
}
