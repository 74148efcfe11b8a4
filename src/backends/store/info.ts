import { existsSync } from "node:fs";
import { NotFoundError } from "../../core/errors.js";
import { type GgufSummary, readGgufSummary } from "../gguf/summary.js";
import { resolveModel } from "./resolve.js";
import type { ModelEntry } from "./types.js";

export interface ModelInfo {
  model: ModelEntry;
  /** Read from the file's header now, so it reflects the file on disk. */
  gguf?: GgufSummary;
}

export async function modelInfo(ref: string): Promise<ModelInfo> {
  const model = resolveModel(ref);
  if (!existsSync(model.path)) {
    throw new NotFoundError(`The files of ${model.name} are missing (${model.path}).`, { hint: `Run \`slm pull ${model.name}\` to fetch them again, or \`slm rm ${model.name}\`.` });
  }
  return { model, gguf: model.format === "gguf" ? await readGgufSummary(model.path) : undefined };
}
