import path from "node:path";
import { NotFoundError, UsageError } from "../../core/errors.js";
import type { BackendContext } from "../../core/events.js";
import { parseModelRef, registryNameFor } from "../../core/modelRef.js";
import { modelIdOf } from "../store/naming.js";
import { getModel, hasModel, listModels } from "../store/registry.js";
import { resolveModel } from "../store/resolve.js";
import { assertFreeName, derivedName, derivedWorkDir, installDerived } from "../store/derived.js";
import { removeUnused } from "../store/cleanup.js";
import type { LineageStep, ModelEntry } from "../store/types.js";
import { type ConvertResult, OUTTYPES, type Outtype, convertHfToGguf, prepareConvert } from "./convert.js";

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
    if (source.format !== "hf") refuseGguf(source.name);
    return { source, pulled: false };
  }
  // Catalog alias or org/repo: the HF-format pull if there is one, else pull it now. A repo pulled as
  // GGUF holds its plain name, so its HF weights are registered as "<repo>:hf".
  const hfName = registryNameFor(parsed, parsed.kind === "catalog" ? "hf" : "gguf")!;
  const candidates = parsed.kind === "hub" ? [hfName, `${hfName}:hf`] : [hfName];
  const known = candidates.map((n) => getModel(n)).find((m) => m?.format === "hf");
  if (known) return { source: known, pulled: false };
  const taken = hasModel(hfName);
  if (parsed.kind === "hub" && parsed.quant) throw new UsageError(`"${ref}" names a GGUF quantization (${parsed.quant}); slm convert needs the repository's Hugging Face weights.`, { hint: `Use the repository without :${parsed.quant}.` });
  if (parsed.kind === "catalog" && !parsed.entry.hf?.repo) throw new NotFoundError(`The catalog has no Hugging Face (safetensors) repository for ${parsed.entry.id}.`);
  const { pull } = await import("../hub/pull.js");
  const r = await pull({ ref, format: "hf", ...(taken ? { name: `${hfName}:hf` } : {}) }, ctx);
  return { source: r.model, pulled: true };
}

/** `slm convert`: the HF weights to one GGUF file in $SLM_HOME/models/<name>/, registered with its lineage. */
export async function convertModel(req: ConvertModelRequest, ctx: BackendContext = {}): Promise<ConvertModelResult> {
  const started = performance.now();
  const outtype = parseOuttype(req.outtype);
  if (req.out !== undefined) assertFreeName(req.out);
  const { source, pulled } = await hfSource(req.ref, ctx);
  // Python, its modules and the folder are checked before any work folder exists.
  const prepared = await prepareConvert(source.path, ctx);
  const name = req.out ?? derivedName(source, outtype.toUpperCase());
  if (req.out === undefined) assertFreeName(name);
  const work = derivedWorkDir();
  try {
    const file = path.join(work, `${name}.gguf`);
    const c = await convertHfToGguf({ input: source.path, outtype, out: file, name: modelIdOf(source) }, ctx, prepared);
    const finalPath = path.join(path.dirname(work), name, path.basename(file));
    const step: LineageStep = {
      from: source.source.type === "local" ? source.path : source.name,
      method: "convert",
      parameters: { outtype, tool: "convert_hf_to_gguf.py", llamaCppRelease: c.llamaCppRelease, architecture: c.architecture, fileType: c.fileType ?? null },
      at: new Date().toISOString(),
    };
    const entry: ModelEntry = {
      name,
      format: "gguf",
      path: finalPath,
      files: [{ path: finalPath, size: c.size }],
      source: { type: "derived" },
      quant: outtype.toUpperCase(),
      size: c.size,
      parameters: c.parameters,
      contextLength: c.contextLength,
      architecture: c.architecture,
      lineage: [step, ...source.lineage],
      createdAt: new Date().toISOString(),
    };
    await installDerived(work, entry);
    return { model: entry, source: { name: source.name, path: source.path }, outtype, conversion: { ...c, path: finalPath }, pulled, seconds: (performance.now() - started) / 1000 };
  } finally {
    // installDerived moved it on success; anything left is a failed or cancelled run.
    removeUnused(work);
  }
}
