import { UsageError } from "../../core/errors.js";
import { withLock } from "../../core/lock.js";
import { emit, type BackendContext } from "../../core/events.js";
import { formatBytes } from "../../core/format.js";
import { type Conversion, conversionSourceKey, conversionsOf } from "../store/conversions.js";
import { assertFreeName, derivedName } from "../store/derived.js";
import { hasModel } from "../store/registry.js";
import { resolveModel } from "../store/resolve.js";
import type { ModelEntry } from "../store/types.js";
import { convertAndRegister, prepareSource } from "./model.js";

/**
 * slm runs GGUF files on llama.cpp and ONNX folders on onnxruntime. A Hugging Face folder (plain, GPTQ
 * or AWQ) is converted once to an F16 GGUF, registered as `<name>-F16` with its lineage, and that GGUF
 * is what run, chat, serve, eval and bench load from then on. This is the one place that decides it.
 */

/** The model to load for `entry`: itself (GGUF, ONNX), its earlier conversion, or a conversion made now (with progress events). */
export async function ensureGguf(entry: ModelEntry, ctx: BackendContext = {}): Promise<ModelEntry> {
  if (entry.format === "gguf" || entry.format === "onnx") return entry;
  const earlier = currentConversion(entry);
  if (earlier) {
    emit(ctx.onEvent, { type: "log", level: "debug", message: `${shown(entry)} runs as ${earlier.name} (converted to GGUF earlier)` });
    return earlier;
  }
  const prepared = await prepareSource(entry, ctx);
  // Two slm processes starting on the same folder convert it once: the second waits, then finds the first's.
  return withLock(`convert:${conversionSourceKey(entry)}`, async () => {
    const meanwhile = currentConversion(entry);
    if (meanwhile) return meanwhile;
    const { model } = await convertAndRegister(prepared, { outtype: "f16", name: freeName(entry) }, ctx);
    emit(ctx.onEvent, { type: "log", level: "info", message: convertedMessage(entry, model) });
    return model;
  }, { onWait: () => emit(ctx.onEvent, { type: "log", level: "info", message: `waiting for another slm that is converting ${shown(entry)}` }) });
}

/**
 * resolveModel, then ensureGguf: what every command that loads a model starts with. `dtype` (--dtype)
 * picks an ONNX variant, and makes a folder with both HF weights and onnx/ resolve as ONNX.
 */
export async function resolveRunnable(ref: string, ctx: BackendContext = {}, o: { dtype?: string } = {}): Promise<ModelEntry> {
  return ensureGguf(resolveModel(ref, o), ctx);
}

/**
 * The registered GGUF converted from `entry` earlier, if its source is unchanged; undefined if there is
 * none. A conversion whose folder changed since is never used silently: it is refused, with what changed.
 */
export function currentConversion(entry: ModelEntry): ModelEntry | undefined {
  const found = conversionsOf(entry);
  const fresh = found.find((c) => c.changed.length === 0);
  if (fresh) return fresh.entry;
  if (found.length > 0) throw staleError(entry, found[0]!);
  return undefined;
}

function staleError(entry: ModelEntry, c: Conversion): UsageError {
  const files = c.changed.length > 3 ? `${c.changed.slice(0, 3).join(", ")} and ${c.changed.length - 3} more` : c.changed.join(", ");
  return new UsageError(`${shown(entry)} changed since it was converted to ${c.entry.name} (${files}), so that GGUF may no longer hold its weights.`, {
    hint: `Remove the old conversion to convert it again: slm rm ${c.entry.name}. Or load ${c.entry.name} by its name to use it as it is.`,
  });
}

/** `<name>-F16`, or `<name>-F16-2`… when another model holds that name (two folders of the same model). */
function freeName(entry: ModelEntry): string {
  const base = derivedName(entry, "F16");
  let name = base;
  for (let i = 2; hasModel(name); i++) name = `${base}-${i}`;
  assertFreeName(name);
  return name;
}

function shown(entry: ModelEntry): string {
  return entry.source.type === "local" ? conversionSourceKey(entry) : entry.name;
}

/** Said once, when the conversion happens: what was made, how big, and how to make it small. */
export function convertedMessage(source: ModelEntry, gguf: ModelEntry): string {
  const q = source.quantization;
  const ratio = q && source.size > 0 ? `, ~${(gguf.size / source.size).toFixed(1)}× the ${q.bits}-bit ${q.method.toUpperCase()} folder` : "";
  return `converted ${shown(source)} to GGUF F16 once: ${gguf.name} (${formatBytes(gguf.size)}${ratio}); \`slm quantize ${gguf.name} --type Q4_K_M\` makes it small`;
}
