import path from "node:path";
import { SlmError, UsageError } from "../../core/errors.js";
import type { BackendContext } from "../../core/events.js";
import { ensureFreeSpace } from "../../core/storage.js";
import type { LlamaCppTool } from "../llamacpp/tools.js";
import { removeUnused } from "../store/cleanup.js";
import { assertFreeName, derivedName, derivedWorkDir, modelsDir } from "../store/derived.js";
import { baseNameOf } from "../store/naming.js";
import { type QuantizeResult, listQuantTypes, planQuantize, runQuantize } from "./quantize.js";
import { canonicalType, nominalBitsPerWeight, suggest } from "./types.js";
import { weightsSuffix, type WeightsPlan } from "./weights.js";
import { checkPython, type QuantizeRecipeResult, runQuantizeRecipe, weightBytes, weightsStep } from "./weightsRun.js";

export interface AwqGgufResult {
  /** The GGUF, registered with the AWQ step and the llama.cpp quantization in its lineage. */
  gguf: QuantizeResult;
  awq: QuantizeRecipeResult;
  seconds: number;
}

/**
 * `--method awq --type Q4_K_M`: AWQ's per-channel scales and clipping applied to the float weights
 * (recipes/quantize_hf.py with output "scaled", an unquantized HF folder in a work folder), then the
 * ordinary llama.cpp way: convert to F16, llama-quantize. The GGUF is registered as `<model>-AWQ-<TYPE>`.
 */
export async function runAwqGguf(plan: WeightsPlan, tools: Partial<Record<LlamaCppTool, string>>, ctx: BackendContext = {}): Promise<AwqGgufResult> {
  const started = performance.now();
  const bin = tools["llama-quantize"];
  if (!bin || !plan.ggufType) throw new SlmError("runAwqGguf needs llama-quantize and a GGUF type.");
  // The type is checked against the installed llama-quantize before minutes of AWQ, not after.
  const types = await listQuantTypes(bin, ctx.signal);
  const type = types.length ? canonicalType(plan.ggufType, types) : plan.ggufType;
  if (!type) {
    const close = suggest(plan.ggufType, types.map((t) => t.name));
    throw new UsageError(`Unknown quantization type "${plan.ggufType}".`, { hint: `${close.length ? `Did you mean ${close.join(" or ")}? ` : ""}llama-quantize knows: ${types.map((t) => t.name).join(", ")}.` });
  }
  const name = plan.request.out ?? derivedName(plan.source.source, weightsSuffix(plan.settings, type));
  if (plan.request.out === undefined && name !== plan.name) assertFreeName(name);
  const python = await checkPython(plan.settings, ctx);
  // The scaled folder (source dtype), its F16 conversion, and the result, at once.
  const params = plan.folder.parameters ?? weightBytes(plan) / 2;
  ensureFreeSpace(modelsDir(), weightBytes(plan) + params * 2 + (params * ((nominalBitsPerWeight(type) ?? 8) + 1)) / 8, `the AWQ-scaled weights and the ${type} GGUF of ${plan.source.source.name}`);
  const scratch = derivedWorkDir();
  try {
    // Named after the model: the converter takes the GGUF's general.name from the folder's name.
    const scaledDir = path.join(scratch, baseNameOf(plan.source.source));
    const awq = await runQuantizeRecipe(plan, scaledDir, "scaled", python, ctx);
    const req = plan.request;
    const qplan = await planQuantize({ ref: scaledDir, type, out: name, outputTensorType: req.outputTensorType, tokenEmbeddingType: req.tokenEmbeddingType, pure: req.pure, threads: plan.settings.threads ?? undefined });
    const origin = { from: plan.source.from, lineage: [weightsStep(plan, awq, "scaled"), ...plan.source.source.lineage] };
    const gguf = await runQuantize(qplan, { tools, origin }, ctx);
    return { gguf, awq, seconds: (performance.now() - started) / 1000 };
  } finally {
    removeUnused(scratch);
  }
}
