import { readFileSync } from "node:fs";
import path from "node:path";
import { UsageError } from "../../core/errors.js";
import type { BackendContext } from "../../core/events.js";
import type { LoraSpec } from "../llama/lora.js";
import type { ModelEntry } from "../store/types.js";
import type { RuntimeLoadOptions, RuntimeModel, RuntimeName } from "./types.js";

/**
 * The one place that picks a runtime by the model's format: GGUF files run on llama.cpp, ONNX folders on
 * onnxruntime. Everything else (commands, eval, serve) takes the RuntimeModel this returns. Each runtime
 * is imported only when a model of its format loads, so a GGUF user never loads onnxruntime.
 */

/** Which runtime runs `entry` (as ensureGguf left it: Hugging Face folders run as their GGUF). */
export function runtimeOf(entry: ModelEntry): RuntimeName {
  return entry.format === "onnx" ? "onnxruntime" : "llama.cpp";
}

function shown(entry: ModelEntry): string {
  return entry.source.type === "local" ? entry.path : entry.name;
}

/** The hint for LoRA on an ONNX model: the adapter has to be merged before the export. */
const MERGED_EXPORT_HINT = "An ONNX model's weights are fixed at export: export the merged fine-tune instead, `slm export <base>+<adapter> --format onnx`, and run that.";

/** Options a model's runtime cannot honour are refused before anything loads or converts. */
export function checkLoadOptions(entry: ModelEntry, o: { dtype?: string; lora?: readonly unknown[] }): void {
  const runtime = runtimeOf(entry);
  if (o.dtype !== undefined && runtime !== "onnxruntime") {
    throw new UsageError(`--dtype picks the variant of an ONNX model; ${shown(entry)} is a ${entry.format.toUpperCase()} model.`, {
      hint: "A GGUF model's quantization is its file: name another one (`repo:Q4_K_M`), or make one with `slm quantize`.",
    });
  }
  if (runtime === "onnxruntime" && ((o.lora?.length ?? 0) > 0 || (entry.adapters?.length ?? 0) > 0)) {
    throw new UsageError(`${shown(entry)} is an ONNX model: it takes no LoRA adapters.`, { hint: MERGED_EXPORT_HINT });
  }
}

/**
 * `--lora` values for `entry`, resolved as the llama.cpp runtime loads them (PEFT folders and Hub repos
 * converted against the model's GGUF). Refused for an ONNX model before any adapter is downloaded or
 * converted.
 */
export async function resolveRuntimeLora(entry: ModelEntry | undefined, specs: readonly string[] | undefined, ctx: BackendContext = {}): Promise<LoraSpec[]> {
  if (entry) checkLoadOptions(entry, { lora: specs });
  if (!specs || specs.length === 0) return [];
  const { resolveLoraArgs } = await import("../adapters/resolve.js");
  return resolveLoraArgs(specs, ctx, { baseGguf: entry?.format === "gguf" ? entry.path : undefined });
}

/**
 * The context length the model was trained for, read from its file without loading it (GGUF header,
 * or an ONNX folder's config.json); undefined when it does not say.
 */
export async function trainedContext(entry: ModelEntry): Promise<number | undefined> {
  if (runtimeOf(entry) === "onnxruntime") {
    try {
      const config = JSON.parse(readFileSync(path.join(entry.path, "config.json"), "utf8")) as Record<string, unknown>;
      const n = config.max_position_embeddings ?? config.n_positions;
      return typeof n === "number" && n > 0 ? n : undefined;
    } catch {
      return undefined; // the runtime's own load names what is wrong with the folder
    }
  }
  const { readGgufSummary } = await import("../gguf/summary.js");
  const n = (await readGgufSummary(entry.path)).contextLength;
  return typeof n === "number" && n > 0 ? n : undefined;
}

/**
 * What a runtime may report while it loads: warnings and notes (log events), not steps or progress.
 * Loading is the caller's to announce (chat's "Loading…", eval's step, nothing for run), as llama.cpp's
 * silent load leaves it; a runtime's own "Loading…" lines would otherwise print between them (garbling
 * chat's line in a terminal) and make one command's output differ by runtime. --verbose keeps them.
 */
function loadEvents(ctx: BackendContext, verbose: boolean | undefined): BackendContext {
  if (verbose || !ctx.onEvent) return ctx;
  const sink = ctx.onEvent;
  return { ...ctx, onEvent: (e) => (e.type === "log" ? sink(e) : undefined) };
}

/** Loads `entry` on its runtime. The caller disposes the model. */
export async function loadRuntimeModel(entry: ModelEntry, o: RuntimeLoadOptions = {}, ctx: BackendContext = {}): Promise<RuntimeModel> {
  checkLoadOptions(entry, o);
  if (runtimeOf(entry) === "onnxruntime") {
    const { loadOnnxModel } = await import("../onnx/model.js");
    return loadOnnxModel(entry, o, loadEvents(ctx, o.verbose));
  }
  const { loadLlamaModel } = await import("../llama/model.js");
  return loadLlamaModel(entry, o, ctx);
}
