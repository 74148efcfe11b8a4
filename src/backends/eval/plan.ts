import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { NotFoundError, UsageError } from "../../core/errors.js";
import type { BackendContext } from "../../core/events.js";
import { type LoraSpec, splitLoraSpec } from "../llama/lora.js";
import { isOnnxDtype } from "../onnx/layout.js";
import { hasModel } from "../store/registry.js";
import { resolveModel } from "../store/resolve.js";
import type { ModelEntry } from "../store/types.js";
import type { MatchMode } from "./match.js";
import { type Task, limitTask, readTask } from "./tasks.js";
import { ensureGguf } from "../convert/runnable.js";
import { checkLoadOptions, resolveRuntimeLora, runtimeOf } from "../runtime/load.js";

/** One model to evaluate: the resolved entry and the adapters added on top of its own. */
export interface EvalModel {
  /** As typed on the command line. */
  ref: string;
  /** The name in tables: the model's, with "+ adapter" for each added adapter. */
  label: string;
  entry: ModelEntry;
  /** Adapters beyond the entry's own (--lora, or MODEL+ADAPTER). */
  extraAdapters: LoraSpec[];
}

export interface EvalPlanRequest {
  models: string[];
  tasks?: string[];
  perplexity?: string;
  kldBase?: string;
  match?: MatchMode;
  limit?: number;
  /** --lora: added to every model. */
  lora?: string[];
  /** --dtype: the variant of every model (ONNX models only). */
  dtype?: string;
}

/** The text of --perplexity (and --kld-base): its path, its name in tables and its content hash. */
export interface EvalText {
  file: string;
  name: string;
  sha256: string;
}

export interface EvalPlan {
  models: EvalModel[];
  tasks: Task[];
  text?: EvalText;
  kldBase?: EvalModel;
}

/**
 * `MODEL+ADAPTER[+ADAPTER…]`: a model with LoRA adapters on top (each in any form --lora takes), so one
 * run can compare a model with and without them. Only when the whole reference is neither an existing file
 * nor a registered name (slm finetune registers <base>+<name>).
 */
function splitAdapters(ref: string): { model: string; adapters: string[] } {
  if (!ref.includes("+") || namesModel(ref)) return { model: ref, adapters: [] };
  const [model, ...adapters] = ref.split("+");
  if (!model || adapters.some((a) => a === "")) throw new UsageError(`"${ref}" is not MODEL+ADAPTER[:SCALE].`);
  return { model, adapters };
}

/**
 * A file, a registered name, or either with an ONNX `:dtype` suffix: `slm export tiny-arith+sub` registers
 * tiny-arith+sub-onnx, whose variants tiny-arith+sub-onnx:q4 are not tiny-arith plus an adapter "sub-onnx:q4".
 */
function namesModel(ref: string): boolean {
  if (existsSync(ref) || hasModel(ref)) return true;
  const i = ref.lastIndexOf(":");
  const base = ref.slice(0, i);
  return i > 0 && isOnnxDtype(ref.slice(i + 1).toLowerCase()) && (hasModel(base) || existsSync(base));
}

/** An adapter as the user named it, for tables (a converted PEFT adapter's cache path says nothing). */
function adapterLabel(spec: string): string {
  const { target, scale } = splitLoraSpec(spec);
  return `${path.basename(target)}${scale !== 1 ? `:${scale}` : ""}`;
}

/** Resolves the model (errors before any adapter is converted or downloaded); `dtype` as resolveModel takes it. */
function modelEntry(ref: string, dtype?: string): { model: string; adapters: string[]; entry: ModelEntry } {
  const { model, adapters } = splitAdapters(ref);
  return { model, adapters, entry: resolveModel(model, { dtype }) };
}

/** A Hugging Face, GPTQ or AWQ folder is evaluated as the GGUF converted from it once (convert/runnable.ts); ONNX folders as they are. */
async function runnable(m: ReturnType<typeof modelEntry>, ctx: BackendContext): Promise<ReturnType<typeof modelEntry>> {
  return { ...m, entry: await ensureGguf(m.entry, ctx) };
}

/** Adapters as --lora takes them: GGUF files, PEFT folders or Hub repos (converted once, cached); none on an ONNX model. */
async function evalModel(ref: string, m: ReturnType<typeof modelEntry>, lora: readonly string[], ctx: BackendContext): Promise<EvalModel> {
  const specs = [...m.adapters, ...lora];
  const extraAdapters = await resolveRuntimeLora(m.entry, specs, ctx);
  // An ONNX variant asked for by NAME:q4 is a model of its own: `DIR:fp32 DIR:q4` are two columns.
  const label = [m.entry.dtype ? `${m.entry.name}:${m.entry.dtype}` : m.entry.name, ...specs.map(adapterLabel)].join(" + ");
  return { ref, label, entry: m.entry, extraAdapters };
}

function evalText(file: string): EvalText {
  const abs = path.resolve(file);
  if (!existsSync(abs)) throw new NotFoundError(`--perplexity file not found: ${abs}`);
  if (statSync(abs).isDirectory()) throw new UsageError(`${abs} is a folder; --perplexity takes a text file.`);
  return { file: abs, name: path.basename(abs).replace(/\.[^.]*$/, ""), sha256: createHash("sha256").update(readFileSync(abs)).digest("hex") };
}

/**
 * KL divergence reads every position's whole next-token distribution through llama.cpp's own logits
 * (llama/logprobs.ts), for the model and the base in lock-step: it runs on llama.cpp models only.
 */
function assertKldRuntime(models: { ref: string; entry: ModelEntry }[]): void {
  const onnx = models.find((m) => runtimeOf(m.entry) !== "llama.cpp");
  if (!onnx) return;
  throw new UsageError(`--kld-base runs on llama.cpp (GGUF) models only, and ${onnx.ref} is an ONNX model.`, {
    hint: "Compare ONNX models by --perplexity alone (without --kld-base), or compute the KL divergence on GGUF builds of the same weights.",
  });
}

/**
 * Checks everything that needs no model loaded: the models resolve, every task file parses (a bad line
 * fails here, before minutes of inference), the text files exist. Nothing is written.
 */
export async function planEval(r: EvalPlanRequest, ctx: BackendContext = {}): Promise<EvalPlan> {
  if (r.models.length === 0) throw new UsageError("Name at least one model to evaluate.");
  const tasks = (r.tasks ?? []).map((t) => limitTask(readTask(t, r.match ?? "exact"), r.limit));
  const names = tasks.map((t) => t.name);
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice) throw new UsageError(`Two task files are named ${twice}; tables name tasks by file name, so rename one.`);
  if (tasks.length === 0 && !r.perplexity && !r.kldBase) {
    throw new UsageError("Nothing to evaluate: give --task FILE.jsonl, --perplexity FILE or --kld-base MODEL.", { hint: "See `slm eval --help`." });
  }
  if (r.kldBase && !r.perplexity) throw new UsageError("--kld-base compares next-token distributions on a text: give it with --perplexity FILE.");
  const text = r.perplexity ? evalText(r.perplexity) : undefined;
  // Every reference resolves before any conversion starts, so a typo in the last one fails at once.
  const resolved = r.models.map((m) => modelEntry(m, r.dtype));
  const resolvedBase = r.kldBase ? modelEntry(r.kldBase, r.dtype) : undefined;
  for (const m of [...resolved, ...(resolvedBase ? [resolvedBase] : [])]) checkLoadOptions(m.entry, { dtype: r.dtype });
  if (resolvedBase) assertKldRuntime([...resolved.map((m, i) => ({ ref: r.models[i]!, entry: m.entry })), { ref: r.kldBase!, entry: resolvedBase.entry }]);
  const entries: ReturnType<typeof modelEntry>[] = [];
  for (const m of resolved) entries.push(await runnable(m, ctx));
  const base = resolvedBase ? await runnable(resolvedBase, ctx) : undefined;
  const models: EvalModel[] = [];
  for (const [i, m] of entries.entries()) models.push(await evalModel(r.models[i]!, m, r.lora ?? [], ctx));
  const labels = models.map((m) => m.label);
  const dup = labels.find((l, i) => labels.indexOf(l) !== i);
  if (dup) throw new UsageError(`${dup} is named twice.`);
  return { models, tasks, text, kldBase: base ? await evalModel(r.kldBase!, base, [], ctx) : undefined };
}
