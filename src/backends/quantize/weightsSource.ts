import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { type CatalogEntry, builtinHfPath, catalog } from "../../core/catalog.js";
import { UsageError } from "../../core/errors.js";
import type { BackendContext } from "../../core/events.js";
import { parseModelRef, registryNameFor } from "../../core/modelRef.js";
import { hfSource } from "../convert/model.js";
import { runDirFor } from "../finetune/run.js";
import { folderQuantization } from "../store/quantFolder.js";
import { getModel, hasModel, listModels } from "../store/registry.js";
import { refuseOnnx } from "../store/onnxRefusal.js";
import { resolveModel } from "../store/resolve.js";
import type { ModelEntry } from "../store/types.js";

/**
 * What GPTQ and AWQ start from: the original Hugging Face weights. A GGUF file is already llama.cpp's
 * format (and usually quantized), and a GPTQ/AWQ folder is already quantized: neither gives the float
 * weights and the activations the algorithms fit against.
 */
export interface WeightsSource {
  /** An unquantized HF folder, named as the result's name and lineage should name it. */
  source: ModelEntry;
  /** How the lineage names the source: a registered name, or the folder's path. */
  from: string;
  /** True when the HF weights were pulled for this run. */
  pulled: boolean;
}

const METHODS = "GPTQ and AWQ";

function catalogOfRepo(repo: string): CatalogEntry | undefined {
  return catalog().find((c) => c.gguf?.repo === repo || c.hf?.repo === repo);
}

/** A GGUF (file, or registered with no known HF original): refused, saying how to get the original weights. */
function refuseGguf(name: string): never {
  throw new UsageError(`${name} is a GGUF model; ${METHODS} need the original Hugging Face weights (safetensors), not a GGUF file.`, {
    hint: "Get them with `slm pull <org/repo> --format hf` and quantize that (or give a local Hugging Face model folder). For a GGUF, use --method llamacpp.",
  });
}

/** A model that is quantized already (GPTQ, AWQ, bitsandbytes…) cannot be quantized again from its float weights. */
function refuseQuantized(name: string, method: string): never {
  throw new UsageError(`${name} is already quantized (${method}); ${METHODS} start from the original, unquantized Hugging Face weights.`, {
    hint: `Quantize the model it was made from. To get a GGUF of ${name}, use \`slm quantize ${name} --type Q4_K_M\`.`,
  });
}

const isDir = (p: unknown): p is string => typeof p === "string" && existsSync(p) && statSync(p).isDirectory();

/**
 * A fine-tune's merged HF weights: the `-merged` model's (its merge step names the folder), or those a
 * `<base>+<name>` run kept in its run folder. Undefined when the fine-tune did not merge.
 */
function mergedWeightsOf(entry: ModelEntry): string | undefined {
  const merge = entry.lineage.find((l) => l.method === "merge-lora");
  if (merge && isDir(merge.parameters.mergedHf)) return merge.parameters.mergedHf;
  if (entry.adapters?.length) {
    const kept = path.join(runDirFor(entry.name), "merged");
    if (isDir(kept)) return kept;
    const mergedEntry = getModel(`${entry.name}-merged`);
    return mergedEntry ? mergedWeightsOf(mergedEntry) : undefined;
  }
  return undefined;
}

/** A registered GGUF that holds merged fine-tune weights, described by its merged HF folder. */
function fromFinetune(entry: ModelEntry): WeightsSource {
  const dir = mergedWeightsOf(entry);
  if (!dir) {
    throw new UsageError(`${entry.name} is a base model with a LoRA adapter, and its fine-tune kept no merged weights; ${METHODS} need the adapter merged into Hugging Face weights.`, {
      hint: "Run the same `slm finetune … --merge` again (it keeps the merged weights in $SLM_HOME/runs/<name>/merged), then quantize the fine-tune.",
    });
  }
  const folder = resolveModel(dir);
  return { source: { ...folder, name: entry.name, source: { type: "derived" }, lineage: entry.lineage }, from: entry.name, pulled: false };
}

/**
 * The HF weights of a catalog model whose GGUF was pulled (and so owns the catalog name): the ones pulled
 * before as `<id>:hf`, or pulled now under that name from the catalog's HF repository.
 */
async function catalogHfWeights(c: CatalogEntry, ctx: BackendContext): Promise<WeightsSource> {
  const name = registryNameFor({ kind: "catalog", entry: c }, "hf")!;
  const known = getModel(name);
  if (known?.format === "hf") return { source: known, from: known.name, pulled: false };
  const { pull } = await import("../hub/pull.js");
  const r = await pull({ ref: `hf:${c.hf!.repo}`, format: "hf", name }, ctx);
  return { source: r.model, from: r.model.name, pulled: true };
}

/** Resolves `ref` to unquantized HF weights, pulling them (`--format hf`) when a catalog or Hub reference needs it. */
export async function resolveWeightsSource(ref: string, ctx: BackendContext = {}): Promise<WeightsSource> {
  const parsed = parseModelRef(ref, hasModel, () => listModels().map((m) => m.name));
  let found: WeightsSource;
  if (parsed.kind === "gguf-file") refuseGguf(parsed.path);
  if (parsed.kind === "catalog" && parsed.entry.builtin) {
    // A built-in model ships its HF weights beside its GGUF (the fixture model).
    const hf = builtinHfPath(parsed.entry);
    if (!hf || !existsSync(hf)) refuseGguf(parsed.entry.id);
    const folder = resolveModel(hf);
    found = { source: { ...folder, name: parsed.entry.id, source: { type: "builtin" } }, from: parsed.entry.id, pulled: false };
  } else if (parsed.kind === "registered") {
    const entry = getModel(parsed.name)!;
    if (entry.format === "gptq" || entry.format === "awq") refuseQuantized(entry.name, entry.format.toUpperCase());
    const c = entry.source.type === "hub" ? catalogOfRepo(entry.source.repo) : undefined;
    if (entry.format === "gguf" && (entry.adapters?.length || entry.lineage.some((l) => l.method === "merge-lora"))) found = fromFinetune(entry);
    else if (entry.format === "gguf" && c?.hf?.repo) found = await catalogHfWeights(c, ctx);
    else if (entry.format === "gguf") refuseGguf(entry.name);
    else found = { source: entry, from: entry.name, pulled: false };
  } else if (parsed.kind === "hf-folder") {
    const folder = resolveModel(ref);
    found = { source: folder, from: folder.path, pulled: false };
  } else {
    const r = await hfSource(ref, ctx, refuseGguf);
    found = { source: r.source, from: r.source.source.type === "local" ? r.source.path : r.source.name, pulled: r.pulled };
  }
  refuseOnnx(found.source, "quantize");
  const quantized = folderQuantization(found.source.path);
  if (quantized) refuseQuantized(found.source.name, quantized.method.toUpperCase());
  return found;
}
