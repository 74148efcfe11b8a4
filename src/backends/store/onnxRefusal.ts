import { UsageError } from "../../core/errors.js";
import type { ModelEntry } from "./types.js";

/**
 * What works from Hugging Face weights (quantize, fine-tune, convert) refuses an ONNX model: its graphs
 * hold weights already lowered (and often quantized) for onnxruntime, which neither llama.cpp's
 * converter nor PEFT reads. The hint names where its weights are: the model it was exported from, or
 * the Hub repository to pull them from, and without a recorded source, `slm info` to find out.
 */
export function refuseOnnx(entry: Pick<ModelEntry, "name" | "format" | "lineage" | "source">, whoNeeds: string): void {
  if (entry.format !== "onnx") return;
  const exported = entry.lineage.find((l) => l.method === "export-onnx")?.from;
  const where = exported
    ? `It was exported from ${exported}: use that instead.`
    : `Get its Hugging Face weights with \`slm pull <org/repo> --format hf\` (the repository the ONNX export was made from${entry.source.type === "hub" ? `; ${entry.source.repo}'s model card names it` : ""}) and use those; \`slm info ${entry.name}\` shows where it came from.`;
  throw new UsageError(`${entry.name} is an ONNX model; ${whoNeeds} the original Hugging Face weights (safetensors), not an ONNX graph.`, { hint: where });
}
