import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { type CatalogEntry, builtinHfPath, catalog } from "../../core/catalog.js";
import { UsageError } from "../../core/errors.js";
import type { BackendContext } from "../../core/events.js";
import { parseModelRef, registryNameFor } from "../../core/modelRef.js";
import { hfSource } from "../convert/model.js";
import { fullWeightsOf, runDirFor } from "../finetune/run.js";
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

/**
 * What the weights are for, in the refusals' words: GPTQ/AWQ (the default) or an ONNX export. Each says
 * who needs the HF weights, what to do once they are there, and the alternative for a GGUF, if any.
 */
export interface WeightsUse {
  /** The subject of "… need(s) the original Hugging Face weights", e.g. "GPTQ and AWQ". */
  who: string;
  /** true when `who` is plural ("GPTQ and AWQ need"); false for "ONNX export needs". */
  plural: boolean;
  /** The verb of "… and <verb> that", e.g. "quantize", "export". */
  verb: string;
  /** One more sentence for the GGUF refusal's hint. */
  ggufAlternative?: string;
}

export const GPTQ_AWQ_USE: WeightsUse = { who: "GPTQ and AWQ", plural: true, verb: "quantize", ggufAlternative: "For a GGUF, use --method llamacpp." };

function catalogOfRepo(repo: string): CatalogEntry | undefined {
  return catalog().find((c) => c.gguf?.repo === repo || c.hf?.repo === repo);
}

const need = (u: WeightsUse) => `${u.who} ${u.plural ? "need" : "needs"}`;

/** A GGUF (file, or registered with no known HF original): refused, saying how to get the original weights. */
function refuseGguf(name: string, u: WeightsUse): never {
  throw new UsageError(`${name} is a GGUF model; ${need(u)} the original Hugging Face weights (safetensors), not a GGUF file.`, {
    hint: `Get them with \`slm pull <org/repo> --format hf\` and ${u.verb} that (or give a local Hugging Face model folder).${u.ggufAlternative ? ` ${u.ggufAlternative}` : ""}`,
  });
}

/** An ONNX export holds no trainable weights to start from: the HF weights it was made from do. */

/** A model that is quantized already (GPTQ, AWQ, bitsandbytes…) cannot be quantized again from its float weights. */
function refuseQuantized(name: string, method: string, u: WeightsUse): never {
  throw new UsageError(`${name} is already quantized (${method}); ${u.who} ${u.plural ? "start" : "starts"} from the original, unquantized Hugging Face weights.`, {
    hint: u === GPTQ_AWQ_USE ? `Quantize the model it was made from. To get a GGUF of ${name}, use \`slm quantize ${name} --type Q4_K_M\`.` : `${u.verb[0].toUpperCase()}${u.verb.slice(1)} the model it was made from.`,
  });
}

const isDir = (p: unknown): p is string => typeof p === "string" && existsSync(p) && statSync(p).isDirectory();

/**
 * A fine-tune's merged HF weights: the `-merged` model's (its merge step names the folder), or those a
 * `<base>+<name>` run kept in its run folder; a full fine-tune's trained folder. Undefined when the
 * fine-tune did not merge.
 */
export function mergedWeightsOf(entry: ModelEntry): string | undefined {
  const full = fullWeightsOf(entry);
  if (full) return full;
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
function fromFinetune(entry: ModelEntry, u: WeightsUse): WeightsSource {
  const dir = mergedWeightsOf(entry);
  if (!dir) {
    throw new UsageError(`${entry.name} is a base model with a LoRA adapter, and its fine-tune kept no merged weights; ${need(u)} the adapter merged into Hugging Face weights.`, {
      hint: `Run the same \`slm finetune … --merge\` again (it keeps the merged weights in $SLM_HOME/runs/<name>/merged), then ${u.verb} the fine-tune.`,
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
export async function resolveWeightsSource(ref: string, ctx: BackendContext = {}, u: WeightsUse = GPTQ_AWQ_USE): Promise<WeightsSource> {
  const parsed = parseModelRef(ref, hasModel, () => listModels().map((m) => m.name), { weightsOnly: true });
  let found: WeightsSource;
  if (parsed.kind === "gguf-file") refuseGguf(parsed.path, u);
  if (parsed.kind === "catalog" && parsed.entry.builtin) {
    // A built-in model ships its HF weights beside its GGUF (the fixture model).
    const hf = builtinHfPath(parsed.entry);
    if (!hf || !existsSync(hf)) refuseGguf(parsed.entry.id, u);
    const folder = resolveModel(hf);
    found = { source: { ...folder, name: parsed.entry.id, source: { type: "builtin" } }, from: parsed.entry.id, pulled: false };
  } else if (parsed.kind === "registered") {
    const entry = getModel(parsed.name)!;
    if (entry.format === "gptq" || entry.format === "awq") refuseQuantized(entry.name, entry.format.toUpperCase(), u);
    refuseOnnx(entry, need(u));
    const c = entry.source.type === "hub" ? catalogOfRepo(entry.source.repo) : undefined;
    if (entry.format === "gguf" && (entry.adapters?.length || entry.lineage.some((l) => l.method === "merge-lora") || fullWeightsOf(entry))) found = fromFinetune(entry, u);
    else if (entry.format === "gguf" && c?.hf?.repo) found = await catalogHfWeights(c, ctx);
    else if (entry.format === "gguf") refuseGguf(entry.name, u);
    else found = { source: entry, from: entry.name, pulled: false };
  } else if (parsed.kind === "hf-folder") {
    const folder = resolveModel(ref);
    found = { source: folder, from: folder.path, pulled: false };
  } else {
    const r = await hfSource(ref, ctx, (name) => refuseGguf(name, u));
    found = { source: r.source, from: r.source.source.type === "local" ? r.source.path : r.source.name, pulled: r.pulled };
  }
  // A folder resolves as ONNX when it holds an export (D's scan): the graph is not weights to start from.
  refuseOnnx(found.source, need(u));
  const quantized = folderQuantization(found.source.path);
  if (quantized) refuseQuantized(found.source.name, quantized.method.toUpperCase(), u);
  return found;
}
