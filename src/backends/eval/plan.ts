import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { NotFoundError, UsageError } from "../../core/errors.js";
import { type LoraSpec, parseLoraSpec } from "../llama/lora.js";
import { resolveModel } from "../store/resolve.js";
import type { ModelEntry } from "../store/types.js";
import type { MatchMode } from "./match.js";
import { type Task, limitTask, readTask } from "./tasks.js";

/** One model to evaluate: the resolved entry and the adapters added on top of its own. */
export interface EvalModel {
  /** As typed on the command line. */
  ref: string;
  /** The model part of `ref` (without "+adapter"), which resolveModel takes. */
  modelRef: string;
  /** The name in tables: the model's, with "+ adapter.gguf" for each added adapter. */
  label: string;
  entry: ModelEntry;
  /** Adapters beyond the entry's own (--lora, or MODEL+ADAPTER.gguf). */
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
 * `MODEL+ADAPTER.gguf[:SCALE]`: a model with a LoRA adapter on top, so one run can compare a model with
 * and without it. Only when the whole reference is not itself an existing file.
 */
function splitAdapter(ref: string): { model: string; adapter?: string } {
  const m = /^(.+?)\+([^+]+\.gguf(?::-?\d+(?:\.\d+)?)?)$/i.exec(ref);
  if (!m || existsSync(ref)) return { model: ref };
  return { model: m[1]!, adapter: m[2]! };
}

function evalModel(ref: string, lora: LoraSpec[]): EvalModel {
  const { model, adapter } = splitAdapter(ref);
  const entry = resolveModel(model);
  if (entry.format !== "gguf") {
    throw new UsageError(`${entry.name} is in Hugging Face format; evaluating it needs a GGUF file.`, { hint: "Convert it first (slm convert), or pull a GGUF repository." });
  }
  const extraAdapters = [...(adapter ? [parseLoraSpec(adapter)] : []), ...lora];
  const label = [entry.name, ...extraAdapters.map((a) => `${path.basename(a.path)}${a.scale !== 1 ? `:${a.scale}` : ""}`)].join(" + ");
  return { ref, modelRef: model, label, entry, extraAdapters };
}

function evalText(file: string): EvalText {
  const abs = path.resolve(file);
  if (!existsSync(abs)) throw new NotFoundError(`--perplexity file not found: ${abs}`);
  if (statSync(abs).isDirectory()) throw new UsageError(`${abs} is a folder; --perplexity takes a text file.`);
  return { file: abs, name: path.basename(abs).replace(/\.[^.]*$/, ""), sha256: createHash("sha256").update(readFileSync(abs)).digest("hex") };
}

/**
 * Checks everything that needs no model loaded: the models resolve, every task file parses (a bad line
 * fails here, before minutes of inference), the text files exist. Nothing is written.
 */
export function planEval(r: EvalPlanRequest): EvalPlan {
  if (r.models.length === 0) throw new UsageError("Name at least one model to evaluate.");
  const tasks = (r.tasks ?? []).map((t) => limitTask(readTask(t, r.match ?? "exact"), r.limit));
  const names = tasks.map((t) => t.name);
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice) throw new UsageError(`Two task files are named ${twice}; tables name tasks by file name, so rename one.`);
  if (tasks.length === 0 && !r.perplexity && !r.kldBase) {
    throw new UsageError("Nothing to evaluate: give --task FILE.jsonl, --perplexity FILE or --kld-base MODEL.", { hint: "See `slm eval --help`." });
  }
  if (r.kldBase && !r.perplexity) throw new UsageError("--kld-base compares next-token distributions on a text: give it with --perplexity FILE.");
  const lora = (r.lora ?? []).map(parseLoraSpec);
  const models = r.models.map((m) => evalModel(m, lora));
  const labels = models.map((m) => m.label);
  const dup = labels.find((l, i) => labels.indexOf(l) !== i);
  if (dup) throw new UsageError(`${dup} is named twice.`);
  return {
    models,
    tasks,
    text: r.perplexity ? evalText(r.perplexity) : undefined,
    kldBase: r.kldBase ? evalModel(r.kldBase, []) : undefined,
  };
}
