import { readFileSync, statSync } from "node:fs";
import path from "node:path";
import { UsageError } from "../../core/errors.js";
import type { BackendContext } from "../../core/events.js";
import { inspectHfFolder } from "../convert/hfFolder.js";
import { variantFile } from "../onnx/layout.js";
import { assertFreeName, derivedName } from "../store/derived.js";
import { getModel } from "../store/registry.js";
import type { ModelEntry } from "../store/types.js";
import { resolveExportSource } from "./source.js";
import { DEFAULT_OPSET, EXPORT_DTYPES, type ExportDtype, type ExportPlan, type ExportRequest } from "./types.js";

const OPSETS = { min: 14, max: 20 };
/** transformers' causal-LM heads: `…ForCausalLM` (Llama, Qwen, Phi…) and GPT-2's `…LMHeadModel`. */
const CAUSAL_LM = /(ForCausalLM|LMHeadModel)$/;

/** `--dtype q4 --dtype q8` or `--dtype q4,q8`, each a dtype this exporter writes; fp32 alone by default. */
export function parseDtypes(values: readonly string[] | undefined): ExportDtype[] {
  if (!values?.length) return ["fp32"];
  const asked = values.flatMap((v) => v.split(",")).map((v) => v.trim().toLowerCase()).filter(Boolean);
  const bad = asked.filter((d) => !(EXPORT_DTYPES as readonly string[]).includes(d));
  if (bad.length) {
    const other = bad.some((d) => ["int8", "uint8", "q4f16", "bnb4"].includes(d));
    throw new UsageError(`--dtype ${bad.join(", ")}: slm exports ${EXPORT_DTYPES.join(", ")}.`, {
      hint: other ? "Those are transformers.js dtypes slm can run when a pulled export has them, but does not make; q8 is dynamic int8." : "e.g. --dtype q4, or --dtype fp32,q4 for both in one folder.",
    });
  }
  return EXPORT_DTYPES.filter((d) => asked.includes(d));
}

/**
 * A decoder-only causal LM is what the layout holds (one graph, logits and a KV cache): an encoder-decoder,
 * encoder-only or vision-language checkpoint is refused from its config.json, before Python loads it.
 */
function assertCausalLm(dir: string, name: string): void {
  let config: { architectures?: unknown; is_encoder_decoder?: unknown; model_type?: unknown };
  try {
    config = JSON.parse(readFileSync(path.join(dir, "config.json"), "utf8")) as typeof config;
  } catch (err) {
    throw new UsageError(`${name}: config.json is unreadable (${(err as Error).message}).`);
  }
  const archs = Array.isArray(config.architectures) ? config.architectures.filter((a): a is string => typeof a === "string") : [];
  if (config.is_encoder_decoder === true || (archs.length > 0 && !archs.some((a) => CAUSAL_LM.test(a)))) {
    throw new UsageError(`${name} is ${archs[0] ?? String(config.model_type)}, not a decoder-only causal language model; slm exports those (one graph with logits and a KV cache, as transformers.js runs them).`, {
      hint: "Encoder-decoder, encoder-only and vision-language models are not exported.",
    });
  }
}

/**
 * An existing registered name: an ONNX export of the same source gains the dtypes it lacks; anything
 * else is refused as `--out` names are (assertFreeName).
 */
function existingExport(name: string, from: string, dtypes: ExportDtype[]): ModelEntry | undefined {
  const entry = getModel(name);
  if (!entry || entry.format !== "onnx") {
    assertFreeName(name);
    return undefined;
  }
  const made = entry.lineage.find((l) => l.method === "export-onnx");
  if (!made || made.from !== from) {
    throw new UsageError(`${name} is an ONNX model ${made ? `exported from ${made.from}` : "slm did not export"}; adding ${from}'s graphs to it would mix two models in one folder.`, {
      hint: "Choose another name with --out.",
    });
  }
  const have = dtypes.filter((d) => entry.onnx?.dtypes.includes(d));
  if (have.length) {
    throw new UsageError(`${name} already has ${have.map((d) => `${d} (${variantFile(d, entry.onnx?.base)})`).join(", ")}.`, {
      hint: `Ask for a dtype it lacks, or \`slm rm ${name}\` and export again.`,
    });
  }
  return entry;
}

/** Checks a request against everything that needs no Python: flags, the source (pulled if it is a Hub or catalog reference), the name. */
export async function planExport(req: ExportRequest, ctx: BackendContext = {}): Promise<ExportPlan> {
  if (req.format !== "onnx") throw new UsageError(`--format ${String(req.format)}: slm exports to onnx.`);
  const dtypes = req.dtypes?.length ? req.dtypes : ["fp32" as const];
  const opset = req.opset ?? DEFAULT_OPSET;
  if (!Number.isInteger(opset) || opset < OPSETS.min || opset > OPSETS.max) throw new UsageError(`--opset ${req.opset}: use ${OPSETS.min} to ${OPSETS.max} (default ${DEFAULT_OPSET}).`);
  if (req.out !== undefined) assertFreeNameOrExport(req.out);
  const { weights, merge } = await resolveExportSource(req.ref, ctx);
  const folder = inspectHfFolder(weights.source.path);
  assertCausalLm(folder.dir, weights.source.name);
  const name = req.out ?? derivedName(weights.source, "onnx");
  const existing = existingExport(name, weights.from, dtypes);
  const envThreads = Number(process.env.SLM_THREADS);
  return {
    request: req,
    dtypes,
    opset,
    // SLM_THREADS is the machine-wide cap slm honours elsewhere; torch starts one thread per core otherwise.
    threads: req.threads ?? (Number.isInteger(envThreads) && envThreads > 0 ? envThreads : null),
    source: weights,
    merge,
    name,
    existing,
    sourceBytes: folder.weights.reduce((a, f) => a + statSync(f).size, 0),
    parameters: folder.parameters,
    contextLength: folder.contextLength,
  };
}

/** `--out` is checked before anything is resolved or pulled: a bad name fails at once. */
function assertFreeNameOrExport(name: string): void {
  if (getModel(name)?.format === "onnx") return;
  assertFreeName(name);
}
