import { statSync } from "node:fs";
import path from "node:path";
import { NotFoundError, UsageError } from "../../core/errors.js";
import type { CatalogEntry } from "../../core/catalog.js";
import { type ModelRef, type ParseOptions, parseModelRef, registryNameFor } from "../../core/modelRef.js";
import { QUANT_TYPES } from "../hub/quant.js";
import { suggest } from "../quantize/types.js";
import { builtinEntry } from "./builtin.js";
import { folderFiles } from "./folderInfo.js";
import { hfFolderModelId } from "./naming.js";
import { ONNX_DTYPES, type OnnxDtype, isOnnxDtype } from "../onnx/layout.js";
import { hasSafetensors, scanOnnxFolder } from "../onnx/scan.js";
import { quantizationOf } from "./quantFolder.js";
import { getModel, hasModel, listModels } from "./registry.js";
import type { ModelEntry } from "./types.js";

export interface ResolveOptions extends ParseOptions {
  /** `--dtype`: the ONNX variant to load (same as a `NAME:q4` suffix); it also makes a folder with both HF weights and onnx/ resolve as ONNX. */
  dtype?: string;
}

/**
 * Turns any model reference into the model to use: a registered one, a built-in, or a local file or
 * folder (described on the fly, not registered). Hub references must have been pulled first.
 * An ONNX model comes back with `dtype` set when the reference or `o.dtype` asked for a variant.
 */
export function resolveModel(ref: string, o: ResolveOptions = {}): ModelEntry {
  const parsed = parseModelRef(ref, hasModel, () => listModels().map((m) => m.name), { isOnnx: (n) => getModel(n)?.format === "onnx", ...o });
  const asked = askedDtype(ref, parsed, o.dtype);
  return withDtype(resolveEntry(ref, parsed, asked), asked, o.dtype !== undefined);
}

function resolveEntry(ref: string, parsed: ModelRef, dtype: OnnxDtype | undefined): ModelEntry {
  switch (parsed.kind) {
    case "registered":
      return getModel(parsed.name)!;
    case "catalog":
    case "hub": {
      if (parsed.kind === "catalog" && parsed.entry.builtin) return builtinVariant(ref, parsed.entry, parsed.quant);
      // A pulled catalog or hub model is registered under its canonical name.
      const name = registryNameFor(parsed)!;
      const found = getModel(name) ?? (parsed.kind === "catalog" ? getModel(registryNameFor(parsed, "hf")!) : undefined) ?? pulledQuant(parsed) ?? (dtype ? pulledOnnx(parsed) : undefined);
      if (found) return found;
      throw notPulled(ref, parsed);
    }
    case "gguf-file": {
      const size = statSync(parsed.path).size;
      return { name: path.basename(parsed.path), format: "gguf", path: parsed.path, files: [{ path: parsed.path, size }], source: { type: "local" }, size, lineage: [], createdAt: new Date().toISOString() };
    }
    case "hf-folder": {
      const files = folderFiles(parsed.path);
      const size = files.reduce((a, f) => a + f.size, 0);
      const base = { name: hfFolderModelId(parsed.path), path: parsed.path, files, source: { type: "local" as const }, size, lineage: [], createdAt: new Date().toISOString() };
      // A folder with both HF weights and onnx/ (an export written beside its source) is the HF model unless a variant is asked for.
      const onnx = scanOnnxFolder(parsed.path);
      if (onnx && (dtype || !hasSafetensors(parsed.path))) return { ...base, format: "onnx", onnx };
      const quantization = quantizationOf(parsed.path);
      return { ...base, format: quantization?.method ?? "hf", ...(quantization ? { quantization } : {}) };
    }
  }
}

/** The variant asked for, by the reference's `:dtype` or by `--dtype` (which must agree). */
function askedDtype(ref: string, parsed: ModelRef, flag: string | undefined): OnnxDtype | undefined {
  const fromRef = parsed.kind === "registered" || parsed.kind === "hf-folder" || parsed.kind === "hub" ? parsed.dtype : undefined;
  if (flag === undefined) return fromRef;
  const d = flag.toLowerCase();
  if (!isOnnxDtype(d)) throw new UsageError(`--dtype ${flag} is not an ONNX dtype.`, { hint: `ONNX dtypes: ${ONNX_DTYPE_LIST}.` });
  if (fromRef && fromRef !== d) throw new UsageError(`${ref} asks for ${fromRef} and --dtype for ${d}; give one.`);
  return d;
}

const ONNX_DTYPE_LIST = ONNX_DTYPES.join(", ");

/**
 * The entry with the variant to load, checked against the variants its folder holds. `byFlag`: the
 * dtype came from `--dtype` (the refusal names what the user typed: the flag, or the `:q4` suffix).
 */
function withDtype(entry: ModelEntry, dtype: OnnxDtype | undefined, byFlag: boolean): ModelEntry {
  if (!dtype) return entry;
  if (entry.format !== "onnx" || !entry.onnx) {
    const asked = byFlag ? "--dtype" : `:${dtype}`;
    throw new UsageError(`${entry.name} is a ${entry.format.toUpperCase()} model; ${asked} picks a variant of an ONNX model.`, { hint: notOnnxHint(entry, dtype, byFlag) });
  }
  if (!entry.onnx.dtypes.includes(dtype)) {
    const pull = entry.source.type === "hub" ? ` Pull it with \`slm pull ${entry.source.repo} --format onnx --dtype ${dtype}\`.` : "";
    throw new UsageError(`${entry.name} has no ${dtype} variant; it has ${entry.onnx.dtypes.join(", ")}.`, { hint: `Use one of those (${entry.name}:${entry.onnx.dtypes[0]}).${pull}` });
  }
  return { ...entry, dtype };
}

/** What to do instead of a dtype on a model that is not ONNX: drop it, or make an ONNX export of the HF weights. */
function notOnnxHint(entry: ModelEntry, dtype: OnnxDtype, byFlag: boolean): string {
  const drop = byFlag ? "Leave out --dtype" : `Use ${entry.name} without the suffix`;
  if (entry.format === "gguf" && entry.source.type === "hub") return `${drop}; a GGUF quantization is picked with :TYPE (e.g. :Q8_0) when pulling.`;
  if (entry.format === "gguf") {
    // A built-in or derived GGUF: the ONNX export starts from the Hugging Face weights it was made from.
    const from = entry.source.type === "builtin" ? entry.name : (entry.lineage[0]?.from ?? "<its Hugging Face weights>");
    return `${drop}, or export ONNX variants from the Hugging Face weights: \`slm export ${from} --format onnx --dtype ${dtype}\`.`;
  }
  return `${drop}, or export it: \`slm export ${entry.source.type === "local" ? entry.path : entry.name} --format onnx --dtype ${dtype}\`.`;
}

/** The ONNX pull of a repository (`org/repo:q4` when the repo was pulled as `org/repo` with --format onnx). */
function pulledOnnx(parsed: HubRef): ModelEntry | undefined {
  const repo = repoOf(parsed);
  return listModels().find((m) => m.format === "onnx" && m.source.type === "hub" && m.source.repo === repo);
}

type HubRef = Extract<ModelRef, { kind: "catalog" | "hub" }>;

function repoOf(parsed: HubRef): string | undefined {
  return parsed.kind === "hub" ? parsed.repo : parsed.entry.gguf?.repo;
}

/** The GGUF pulls of the same repository (any name they were registered under). */
function pulledOf(parsed: HubRef): ModelEntry[] {
  const repo = repoOf(parsed);
  return listModels().filter((m) => m.format === "gguf" && m.source.type === "hub" && m.source.repo === repo);
}

/** `org/repo:F16` finds the F16 file pulled as plain `org/repo` (a repo with one quantization). */
/**
 * A built-in model is one file: a `:TYPE` other than its own is refused rather than answered with that
 * file (a user asking for `tiny-arith:Q4_K_M` would otherwise measure F16 and believe it is Q4_K_M).
 */
function builtinVariant(ref: string, entry: CatalogEntry, quant: string | undefined): ModelEntry {
  const own = entry.builtin!.quant;
  if (!quant || quant.toUpperCase() === own.toUpperCase()) return builtinEntry(entry);
  const type = quant.toUpperCase();
  const made = getModel(`${entry.id}-${type}`);
  const known = (QUANT_TYPES as readonly string[]).includes(type);
  const make = known ? `\`slm quantize ${entry.id} --type ${type}\` (registered as ${entry.id}-${type})` : `\`slm quantize ${entry.id} --type TYPE\` (e.g. ${suggest(type, QUANT_TYPES)[0] ?? "Q4_K_M"})`;
  throw new NotFoundError(`${entry.id} is built in as ${own} only; ${ref} is not a model here.`, {
    hint: made ? `Its ${type} quantization is registered as ${made.name}: use that name.` : `Make it with ${make}, or use ${entry.id}.`,
  });
}

function pulledQuant(parsed: HubRef): ModelEntry | undefined {
  return parsed.quant ? pulledOf(parsed).find((m) => m.quant === parsed.quant) : undefined;
}

/** "has not been pulled yet", with a did-you-mean when the quantization is a typo of one pulled or known. */
function notPulled(ref: string, parsed: HubRef): NotFoundError {
  const base = ref.slice(0, ref.lastIndexOf(":"));
  const pulled = pulledOf(parsed).map((m) => m.quant).filter((q): q is string => !!q);
  if (parsed.quant && !(QUANT_TYPES as readonly string[]).includes(parsed.quant)) {
    const close = suggest(parsed.quant, pulled).length > 0 ? suggest(parsed.quant, pulled) : suggest(parsed.quant, QUANT_TYPES);
    if (close.length > 0) {
      return new NotFoundError(`"${parsed.quant}" in ${ref} is not a quantization type.`, { hint: `Did you mean ${close.map((q) => `${base}:${q}`).join(" or ")}?${pulled.length ? ` Pulled: ${pulled.join(", ")}.` : ""}` });
    }
  }
  return new NotFoundError(`${ref} has not been pulled yet.`, { hint: `Run \`slm pull ${ref}\` first.${pulled.length ? ` Pulled from that repository: ${pulled.join(", ")}.` : ""}` });
}
