import { rmSync } from "node:fs";
import path from "node:path";
import { CancelledError, NotFoundError, UsageError } from "../../core/errors.js";
import type { BackendContext } from "../../core/events.js";
import { parseModelRef, registryNameFor } from "../../core/modelRef.js";
import { modelIdOf } from "../store/naming.js";
import { getModel, hasModel, listModels } from "../store/registry.js";
import { resolveModel } from "../store/resolve.js";
import { assertFreeName, derivedName, derivedWorkDir, installDerived } from "../store/derived.js";
import { removeUnused } from "../store/cleanup.js";
import { conversionSourceKey, sourceFiles } from "../store/conversions.js";
import { refuseOnnx } from "../store/onnxRefusal.js";
import { assertConvertible } from "../store/quantFolder.js";
import type { LineageStep, ModelEntry, WeightQuantization } from "../store/types.js";
import { type ConvertEnv, type ConvertResult, OUTTYPES, type Outtype, convertHfToGguf, prepareConvert } from "./convert.js";
import { checkDequantize, dequantizeFolder } from "./dequantize.js";
import { inspectHfFolder, safetensorsTensors } from "./hfFolder.js";

export interface ConvertModelRequest {
  /** An HF folder, a registered HF-format model, a catalog alias or org/repo (pulled with --format hf when needed). */
  ref: string;
  outtype?: string;
  /** Register under this name (default `<source>-<OUTTYPE>`). */
  out?: string;
}

export interface ConvertModelResult {
  model: ModelEntry;
  source: { name: string; path: string };
  outtype: Outtype;
  conversion: ConvertResult;
  /** True when the Hugging Face weights were pulled first. */
  pulled: boolean;
  seconds: number;
}

export function parseOuttype(value: string | undefined): Outtype {
  const v = (value ?? "f16").toLowerCase();
  if (!(OUTTYPES as readonly string[]).includes(v)) throw new UsageError(`--outtype must be one of ${OUTTYPES.join(", ")} (got "${value}").`);
  return v as Outtype;
}

const refuseGgufForConvert = (name: string): never => {
  throw new UsageError(`${name} is already a GGUF model; slm convert turns Hugging Face weights (safetensors) into GGUF.`, {
    hint: "Use it directly (slm run, slm quantize), or convert its Hugging Face original: slm convert <org/repo>.",
  });
};

/**
 * The model in Hugging Face format that `ref` names: a folder as it is, a registered HF model, or a
 * catalog/Hub reference whose HF weights are pulled now (or were pulled before). `refuseGguf` says why
 * a GGUF-only model will not do, in the words of the command that asked.
 */
export async function hfSource(ref: string, ctx: BackendContext, refuseGguf: (name: string) => never = refuseGgufForConvert): Promise<{ source: ModelEntry; pulled: boolean }> {
  const parsed = parseModelRef(ref, hasModel, () => listModels().map((m) => m.name));
  if (parsed.kind === "gguf-file") refuseGguf(parsed.path);
  if (parsed.kind === "catalog" && parsed.entry.builtin) refuseGguf(parsed.entry.id);
  if (parsed.kind === "registered" || parsed.kind === "hf-folder") {
    const source = resolveModel(ref);
    if (source.format === "gguf") refuseGguf(source.name);
    return { source, pulled: false };
  }
  // Catalog alias or org/repo: the HF-format pull if there is one, else pull it now. A repo pulled as
  // GGUF holds its plain name, so its HF weights are registered as "<repo>:hf".
  const hfName = registryNameFor(parsed, parsed.kind === "catalog" ? "hf" : "gguf")!;
  const candidates = parsed.kind === "hub" ? [hfName, `${hfName}:hf`] : [hfName];
  const known = candidates.map((n) => getModel(n)).find((m) => m !== undefined && m.format !== "gguf");
  if (known) return { source: known, pulled: false };
  const taken = hasModel(hfName);
  if (parsed.kind === "hub" && parsed.quant) throw new UsageError(`"${ref}" names a GGUF quantization (${parsed.quant}); slm convert needs the repository's Hugging Face weights.`, { hint: `Use the repository without :${parsed.quant}.` });
  if (parsed.kind === "catalog" && !parsed.entry.hf?.repo) throw new NotFoundError(`The catalog has no Hugging Face (safetensors) repository for ${parsed.entry.id}.`);
  const { pull } = await import("../hub/pull.js");
  const r = await pull({ ref, format: "hf", ...(taken ? { name: `${hfName}:hf` } : {}) }, ctx);
  return { source: r.model, pulled: true };
}

/** Python, its modules and the folder, checked before any work folder exists (and before a long tools build). */
export interface PreparedSource {
  source: ModelEntry;
  convert: ConvertEnv;
  /** The source's GPTQ/AWQ packing. */
  quantization?: WeightQuantization;
  /** Dequantized by slm's recipe before the converter: AWQ, which the converter refuses, and GPTQ without g_idx, which it cannot read. */
  viaRecipe: boolean;
}

export async function prepareSource(source: ModelEntry, ctx: BackendContext = {}): Promise<PreparedSource> {
  refuseOnnx(source, "converting to GGUF needs");
  const quantization = assertConvertible(source.path, source.source.type === "local" ? source.path : source.name)?.quantization;
  const convert = await prepareConvert(source.path, ctx);
  const viaRecipe = quantization?.method === "awq" || (quantization?.method === "gptq" && lacksGIdx(convert.folder.weights));
  if (viaRecipe) await checkDequantize(convert.python, ctx);
  return { source, convert, quantization, viaRecipe };
}

/**
 * Older GPTQ checkpoints (without act-order) have no g_idx: inputs are grouped by position. llama.cpp's
 * converter looks every g_idx up and fails on such a folder; the recipe's dequantize groups by position.
 */
function lacksGIdx(weights: string[]): boolean {
  const names = new Set(weights.filter((w) => w.endsWith(".safetensors")).flatMap((w) => safetensorsTensors(w).map((t) => t.name)));
  return [...names].some((n) => n.endsWith(".qweight") && !names.has(`${n.slice(0, -".qweight".length)}.g_idx`));
}

export interface SourceGguf extends ConvertResult {
  /** The packing that was undone on the way ("gptq" by the converter itself, "awq" by the recipe). */
  dequantized: "gptq" | "awq" | null;
}

/**
 * The one way from a Hugging Face folder (plain, GPTQ or AWQ) to a GGUF file, shared by slm convert,
 * the one-time conversion before running a model, and slm quantize of such a folder. llama.cpp's
 * converter dequantizes GPTQ itself; AWQ, which it refuses, and GPTQ without g_idx become a float
 * folder in `work` first, by the recipe (removed once converted). `out` appears complete or not at all.
 */
export async function sourceToGguf(p: PreparedSource, o: { outtype: Outtype; out: string; work: string }, ctx: BackendContext = {}): Promise<SourceGguf> {
  const id = modelIdOf(p.source);
  const dequantized = p.quantization?.method ?? null;
  if (!p.viaRecipe) {
    const c = await convertHfToGguf({ input: p.source.path, outtype: o.outtype, out: o.out, name: id }, ctx, p.convert);
    return { ...c, dequantized };
  }
  const dir = path.join(o.work, "dequantized");
  try {
    await dequantizeFolder(p.source.path, dir, o.outtype === "f16" ? "float16" : "float32", p.convert.python, ctx);
    if (ctx.signal?.aborted) throw new CancelledError();
    const c = await convertHfToGguf({ input: dir, outtype: o.outtype, out: o.out, name: id }, ctx, { ...p.convert, folder: inspectHfFolder(dir) });
    return { ...c, dequantized };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Converts `source` and registers the GGUF as `name` in $SLM_HOME/models/<name>/, with its lineage: what
 * it came from, how, and the source's files at the time (store/conversions.ts tells a changed folder).
 */
export async function convertAndRegister(p: PreparedSource, o: { outtype: Outtype; name: string }, ctx: BackendContext = {}): Promise<{ model: ModelEntry; conversion: SourceGguf }> {
  const { source } = p;
  // Read before converting: a folder rewritten meanwhile then reads as changed next time.
  const recorded = sourceFiles(source.path);
  const work = derivedWorkDir();
  try {
    const file = path.join(work, `${o.name}.gguf`);
    const c = await sourceToGguf(p, { outtype: o.outtype, out: file, work }, ctx);
    const finalPath = path.join(path.dirname(work), o.name, path.basename(file));
    const step: LineageStep = {
      from: conversionSourceKey(source),
      method: "convert",
      parameters: {
        outtype: o.outtype,
        tool: "convert_hf_to_gguf.py",
        llamaCppRelease: c.llamaCppRelease,
        architecture: c.architecture,
        fileType: c.fileType ?? null,
        dequantized: c.dequantized,
        ...(p.quantization ? { quantization: p.quantization } : {}),
        sourceFiles: recorded,
      },
      at: new Date().toISOString(),
    };
    const entry: ModelEntry = {
      name: o.name,
      format: "gguf",
      path: finalPath,
      files: [{ path: finalPath, size: c.size }],
      source: { type: "derived" },
      quant: o.outtype.toUpperCase(),
      size: c.size,
      parameters: c.parameters,
      contextLength: c.contextLength,
      architecture: c.architecture,
      lineage: [step, ...source.lineage],
      createdAt: new Date().toISOString(),
    };
    await installDerived(work, entry);
    return { model: entry, conversion: { ...c, path: finalPath } };
  } finally {
    // installDerived moved it on success; anything left is a failed or cancelled run.
    removeUnused(work);
  }
}

/** `slm convert`: the HF weights to one GGUF file in $SLM_HOME/models/<name>/, registered with its lineage. */
export async function convertModel(req: ConvertModelRequest, ctx: BackendContext = {}): Promise<ConvertModelResult> {
  const started = performance.now();
  const outtype = parseOuttype(req.outtype);
  if (req.out !== undefined) assertFreeName(req.out);
  const { source, pulled } = await hfSource(req.ref, ctx);
  const prepared = await prepareSource(source, ctx);
  const name = req.out ?? derivedName(source, outtype.toUpperCase());
  if (req.out === undefined) assertFreeName(name);
  const { model, conversion } = await convertAndRegister(prepared, { outtype, name }, ctx);
  return { model, source: { name: source.name, path: source.path }, outtype, conversion, pulled, seconds: (performance.now() - started) / 1000 };
}
