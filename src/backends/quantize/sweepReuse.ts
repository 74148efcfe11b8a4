import { existsSync } from "node:fs";
import { getModel } from "../store/registry.js";
import type { ModelEntry } from "../store/types.js";
import type { QuantizeRequest } from "./quantize.js";

/**
 * A registered model the sweep can measure instead of making again: one that `slm quantize` made from
 * the same source file or name, of the same type, with no importance matrix and no per-tensor overrides
 * (what a plain `slm quantize MODEL --type T` makes, and what a sweep without --imatrix/--calibration
 * would make under the same name). Anything else under that name is a different model, and the sweep
 * refuses the name rather than measure the wrong thing or overwrite it.
 */
export function reusableQuant(name: string, source: ModelEntry, type: string, req: QuantizeRequest): ModelEntry | undefined {
  if (req.imatrix || req.calibration || req.outputTensorType || req.tokenEmbeddingType || req.pure) return undefined;
  const existing = getModel(name);
  const step = existing?.lineage[0];
  if (!existing || !step || step.method !== "quantize" || !existsSync(existing.path)) return undefined;
  const p = step.parameters;
  const from = source.source.type === "local" ? source.path : source.name;
  const plain = p.imatrix == null && p.imatrixSource == null && !p.outputTensorType && !p.tokenEmbeddingType && !p.pure;
  return step.from === from && p.type === type && plain ? existing : undefined;
}
