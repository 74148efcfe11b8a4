import { existsSync } from "node:fs";
import path from "node:path";
import { UsageError } from "../../core/errors.js";
import type { BackendContext } from "../../core/events.js";
import { readRunRecord, runDirFor } from "../finetune/run.js";
import { type WeightsSource, type WeightsUse, mergedWeightsOf, resolveWeightsSource } from "../quantize/weightsSource.js";
import { getModel, hasModel } from "../store/registry.js";
import { resolveModel } from "../store/resolve.js";
import type { MergeFirst } from "./types.js";

/**
 * What an ONNX export starts from: Hugging Face weights, found as `quantize --method` finds them
 * (quantize/weightsSource.ts), with one addition: a fine-tune that kept no merged weights is merged here
 * from its run folder (the PEFT adapter and the base it was trained on), since exporting a fine-tune is
 * exporting it merged.
 */
export const EXPORT_USE: WeightsUse = { who: "ONNX export", plural: false, verb: "export" };

export interface ExportSource {
  weights: WeightsSource;
  merge?: MergeFirst;
}

/** The PEFT adapter and HF base of a registered fine-tune's run, when both are still there. */
function unmergedFinetune(ref: string): ExportSource | undefined {
  const entry = getModel(ref);
  if (!entry || entry.format !== "gguf" || !entry.adapters?.length || mergedWeightsOf(entry)) return undefined;
  const runDir = runDirFor(entry.name);
  const base = readRunRecord(runDir)?.config.base;
  const adapter = path.join(runDir, "adapter");
  if (!base || !existsSync(path.join(base, "config.json")) || !existsSync(path.join(adapter, "adapter_config.json"))) return undefined;
  const folder = resolveModel(base);
  return {
    weights: { source: { ...folder, name: entry.name, source: { type: "derived" }, lineage: entry.lineage }, from: entry.name, pulled: false },
    merge: { base: path.resolve(base), adapter },
  };
}

/**
 * `BASE+FOLDER` (as eval takes a model with an adapter): the base's HF weights with a PEFT adapter folder
 * merged in first, as a registered fine-tune's run is. Named `<base>+<folder name>`; the lineage's
 * `from` is a reference that exports the same again.
 */
async function withPeftFolder(ref: string, ctx: BackendContext): Promise<ExportSource | undefined> {
  const plus = ref.indexOf("+");
  if (plus <= 0 || hasModel(ref)) return undefined;
  const [base, ...adapters] = [ref.slice(0, plus), ...ref.slice(plus + 1).split("+")];
  const hint = "Export a base with one PEFT adapter folder (BASE+FOLDER, the folder holding adapter_config.json), or a registered fine-tune by its name.";
  if (adapters.length !== 1 || adapters[0] === "") throw new UsageError(`"${ref}" is not BASE+ADAPTER: an ONNX export merges one adapter.`, { hint });
  const adapter = path.resolve(adapters[0]);
  if (!existsSync(path.join(adapter, "adapter_config.json"))) {
    throw new UsageError(`${adapters[0]} (after +) is not a PEFT adapter folder: it has no adapter_config.json.`, {
      hint: `${hint} A GGUF LoRA cannot be merged into Hugging Face weights.`,
    });
  }
  const weights = await resolveWeightsSource(base, ctx, EXPORT_USE);
  const name = `${weights.source.name}+${path.basename(adapter)}`;
  return {
    weights: { ...weights, source: { ...weights.source, name, source: { type: "derived" } }, from: `${weights.from}+${adapter}` },
    merge: { base: path.resolve(weights.source.path), adapter },
  };
}

export async function resolveExportSource(ref: string, ctx: BackendContext = {}): Promise<ExportSource> {
  const peft = await withPeftFolder(ref, ctx);
  if (peft) return peft;
  try {
    return { weights: await resolveWeightsSource(ref, ctx, EXPORT_USE) };
  } catch (err) {
    const merge = err instanceof UsageError ? unmergedFinetune(ref) : undefined;
    if (merge) return merge;
    throw err;
  }
}
