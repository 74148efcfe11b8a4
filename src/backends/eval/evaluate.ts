import { emit, type BackendContext } from "../../core/events.js";
import type { SamplingOptions } from "../llama/generate.js";
import { loadModel } from "../llama/loader.js";
import type { LoraSpec } from "../llama/lora.js";
import type { GpuChoice } from "../llama/runtime.js";
import type { EvalRecord } from "../store/types.js";
import { type ChoiceScore, scoreChoices } from "./choice.js";
import { EVAL_MAX_TOKENS, type GenerationScore, scoreGeneration } from "./generation.js";
import type { EvalModel, EvalPlan } from "./plan.js";
import type { MatchMode } from "./match.js";
import { storeEvals, whyNotStored } from "./store.js";

/** Parallel sequences per model when --parallel is not given: enough to batch decodes well on a CPU. */
export const DEFAULT_PARALLEL = 8;

export interface EvalRunOptions extends SamplingOptions {
  match: MatchMode;
  limit?: number;
  threads?: number;
  /** Context of each parallel sequence (tasks). */
  ctx?: number;
  batch?: number;
  gpu?: GpuChoice;
  parallel?: number;
  /** Store results with registered models (default true). */
  store?: boolean;
  verbose?: boolean;
}

export interface TaskResult {
  task: string;
  file: string;
  sha256: string;
  score: GenerationScore | ChoiceScore;
}

export interface ModelResult {
  label: string;
  model: string;
  path: string;
  adapters: LoraSpec[];
  tasks: TaskResult[];
  /** Whether the results were stored with the model, and why not when they were not. */
  stored: boolean;
  notStored?: string;
  threads: number;
  parallel: number;
  seconds: number;
}

export interface EvalResult {
  models: ModelResult[];
  tasks: { name: string; file: string; sha256: string; kind: "generate" | "choice"; questions: number; total: number }[];
  settings: Record<string, string | number | boolean>;
  date: string;
}

/** The settings that decide a task's numbers, stored with each record so reruns are comparable. */
function taskSettings(o: EvalRunOptions, kind: "generate" | "choice"): Record<string, string | number | boolean> {
  const s: Record<string, string | number | boolean> = {};
  if (o.limit !== undefined) s.limit = o.limit;
  if (kind === "generate") {
    s.match = o.match;
    s.maxTokens = o.maxTokens ?? EVAL_MAX_TOKENS;
    s.temperature = o.temperature ?? 0;
    if ((o.temperature ?? 0) > 0) {
      s.seed = o.seed ?? 0;
      if (o.topK !== undefined) s.topK = o.topK;
      if (o.topP !== undefined) s.topP = o.topP;
      if (o.minP !== undefined) s.minP = o.minP;
    }
    if (o.repeatPenalty !== undefined && o.repeatPenalty !== 1) s.repeatPenalty = o.repeatPenalty;
    if (o.stop?.length) s.stop = o.stop.join("\u0000");
  }
  return s;
}

function taskRecord(t: TaskResult, o: EvalRunOptions, at: string): EvalRecord {
  const s = t.score;
  const metrics: Record<string, number> =
    s.kind === "generate"
      ? { accuracy: s.accuracy.value, accuracy_low: s.accuracy.low, accuracy_high: s.accuracy.high, questions_per_s: s.questionsPerSecond }
      : { acc: s.acc.value, acc_low: s.acc.low, acc_high: s.acc.high, acc_norm: s.accNorm.value, acc_norm_low: s.accNorm.low, acc_norm_high: s.accNorm.high, questions_per_s: s.questionsPerSecond };
  return { kind: s.kind, name: t.task, file: t.file, sha256: t.sha256, metrics, n: s.questions, settings: taskSettings(o, s.kind), at };
}

async function evaluateModel(m: EvalModel, plan: EvalPlan, o: EvalRunOptions, ctx: BackendContext): Promise<ModelResult> {
  const started = performance.now();
  const stepId = `model:${m.label}`;
  emit(ctx.onEvent, { type: "step", id: stepId, status: "start", title: `Loading ${m.label}` });
  const parallel = o.parallel ?? DEFAULT_PARALLEL;
  const loaded = await loadModel(m.entry, { gpu: o.gpu, lora: m.extraAdapters, contextSize: o.ctx, threads: o.threads, batchSize: o.batch, sequences: parallel, verbose: o.verbose }, ctx);
  const tasks: TaskResult[] = [];
  try {
    emit(ctx.onEvent, { type: "step", id: stepId, status: "done", title: `Loaded ${m.label}`, detail: `${loaded.settings.threads} threads, ${parallel} sequences of ${loaded.context.contextSize} tokens` });
    for (const task of plan.tasks) {
      const id = `task:${task.name}`;
      emit(ctx.onEvent, { type: "step", id, status: "start", title: `${m.label}: ${task.name} (${task.items.length} questions)` });
      const score = task.kind === "generate" ? await scoreGeneration(loaded, task, o, ctx) : await scoreChoices(loaded, task, ctx);
      const headline = score.kind === "generate" ? `${(score.accuracy.value * 100).toFixed(1)} % ${score.match}` : `acc ${(score.acc.value * 100).toFixed(1)} %, acc_norm ${(score.accNorm.value * 100).toFixed(1)} %`;
      emit(ctx.onEvent, { type: "step", id, status: "done", title: `${m.label}: ${task.name}`, detail: `${headline}, ${score.questionsPerSecond.toFixed(1)} questions/s` });
      tasks.push({ task: task.name, file: task.file, sha256: task.sha256, score });
    }
  } finally {
    await loaded.dispose();
  }
  return {
    label: m.label,
    model: m.entry.name,
    path: m.entry.path,
    adapters: loaded.adapters,
    tasks,
    stored: false,
    threads: loaded.settings.threads,
    parallel,
    seconds: (performance.now() - started) / 1000,
  };
}

/**
 * Evaluates each model of the plan in turn (one loaded at a time, so memory holds one model), then
 * stores every registered model's results in one registry update per model.
 */
export async function runEval(plan: EvalPlan, o: EvalRunOptions, ctx: BackendContext = {}): Promise<EvalResult> {
  const date = new Date().toISOString();
  const models: ModelResult[] = [];
  for (const m of plan.models) models.push(await evaluateModel(m, plan, o, ctx));
  for (const [i, r] of models.entries()) {
    const m = plan.models[i]!;
    const reason = o.store === false ? "--no-store" : whyNotStored(m.entry, m.extraAdapters.length);
    if (reason) {
      r.notStored = reason;
      continue;
    }
    r.stored = await storeEvals(m.entry, r.tasks.map((t) => taskRecord(t, o, date)));
    if (!r.stored) r.notStored = `${m.entry.name} is no longer registered`;
  }
  return {
    models,
    tasks: plan.tasks.map((t) => ({ name: t.name, file: t.file, sha256: t.sha256, kind: t.kind, questions: t.items.length, total: t.total })),
    settings: { match: o.match, ...(o.limit !== undefined ? { limit: o.limit } : {}), maxTokens: o.maxTokens ?? EVAL_MAX_TOKENS, temperature: o.temperature ?? 0 },
    date,
  };
}
