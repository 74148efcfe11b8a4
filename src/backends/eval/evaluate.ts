import { emit, type BackendContext } from "../../core/events.js";
import { SlmError } from "../../core/errors.js";
import { slmPaths } from "../../core/paths.js";
import { UNWRITABLE_REASON, storageErrorOf, unwritableReason } from "../../core/storage.js";
import type { SamplingOptions } from "../llama/generate.js";
import type { LoraSpec } from "../llama/lora.js";
import type { GpuChoice } from "../llama/runtime.js";
import { loadRuntimeModel, trainedContext } from "../runtime/load.js";
import type { OnnxDtype } from "../onnx/layout.js";
import type { EvalRecord, ModelEntry } from "../store/types.js";
import { type ChoiceScore, scoreChoices } from "./choice.js";
import { EVAL_MAX_TOKENS, type GenerationScore, scoreGeneration } from "./generation.js";
import { type KldResult, klDivergence } from "./kld.js";
import { type PerplexityResult, perplexity } from "./perplexity.js";
import type { EvalModel, EvalPlan } from "./plan.js";
import type { MatchMode } from "./match.js";
import { storeEvals, whyNotStored } from "./store.js";
import { countOf } from "../../core/format.js";

/** Parallel sequences per model when --parallel is not given: enough to batch decodes well on a CPU. */
export const DEFAULT_PARALLEL = 8;

/** Perplexity chunk size without --ctx (what llama-perplexity is usually run with), or the model's training context if shorter. */
export const DEFAULT_TEXT_CTX = 512;

export interface EvalRunOptions extends SamplingOptions {
  match: MatchMode;
  limit?: number;
  threads?: number;
  /** Context of each parallel sequence (tasks). */
  ctx?: number;
  batch?: number;
  gpu?: GpuChoice;
  /** ONNX models: the variant to load (--dtype). */
  dtype?: OnnxDtype;
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
  /** --perplexity without --kld-base. */
  perplexity?: PerplexityResult;
  /** --kld-base: the divergence from the base, with this model's perplexity on the same chunks. */
  kld?: KldResult & { base: string };
  /** Whether the results were stored with the model, and why not when they were not. */
  stored: boolean;
  notStored?: string;
  /** Threads of the task context (the perplexity runs choose theirs the same way). */
  threads?: number;
  parallel: number;
  seconds: number;
}

export interface EvalResult {
  models: ModelResult[];
  tasks: { name: string; file: string; sha256: string; kind: "generate" | "choice"; questions: number; total: number }[];
  /** The --perplexity text, with the chunk size used. */
  text?: { name: string; file: string; sha256: string; ctx: number; kldBase?: string };
  settings: Record<string, string | number | boolean>;
  date: string;
  /** Storing the results failed (a read-only or full SLM_HOME): the scores above are still valid. */
  storeError?: SlmError;
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

/** An ONNX variant's records are its own: the dtype is one of the settings that tell runs apart. */
function modelSettings(entry: ModelEntry): Record<string, string> {
  return entry.dtype ? { dtype: entry.dtype } : {};
}

function taskRecord(t: TaskResult, o: EvalRunOptions, at: string, entry: ModelEntry): EvalRecord {
  const s = t.score;
  const metrics: Record<string, number> =
    s.kind === "generate"
      ? { accuracy: s.accuracy.value, accuracy_low: s.accuracy.low, accuracy_high: s.accuracy.high, questions_per_s: s.questionsPerSecond }
      : { acc: s.acc.value, acc_low: s.acc.low, acc_high: s.acc.high, acc_norm: s.accNorm.value, acc_norm_low: s.accNorm.low, acc_norm_high: s.accNorm.high, questions_per_s: s.questionsPerSecond };
  return { kind: s.kind, name: t.task, file: t.file, sha256: t.sha256, metrics, n: s.questions, settings: { ...taskSettings(o, s.kind), ...modelSettings(entry) }, at };
}

function textRecords(r: ModelResult, plan: EvalPlan, ctxSize: number, at: string, entry: ModelEntry): EvalRecord[] {
  const text = plan.text;
  if (!text) return [];
  const own = modelSettings(entry);
  const base = { file: text.file, sha256: text.sha256, at };
  if (r.kld) {
    const k = r.kld;
    return [
      { ...base, kind: "perplexity", name: `ppl ${text.name}`, metrics: { ppl: k.ppl, ppl_error: k.pplError }, n: k.tokens, settings: { ctx: ctxSize, ...own } },
      {
        ...base,
        kind: "kld",
        name: `kld ${text.name}`,
        metrics: { kld_mean: k.mean, kld_mean_error: k.meanError, kld_median: k.median, kld_p99: k.p99, kld_max: k.max, same_top: k.sameTop, same_top_error: k.sameTopError, ppl: k.ppl, base_ppl: k.basePpl },
        n: k.tokens,
        settings: { ctx: ctxSize, base: k.base, ...own },
      },
    ];
  }
  if (r.perplexity) return [{ ...base, kind: "perplexity", name: `ppl ${text.name}`, metrics: { ppl: r.perplexity.ppl, ppl_error: r.perplexity.pplError }, n: r.perplexity.tokens, settings: { ctx: ctxSize, ...own } }];
  return [];
}

/** --ctx, else 512 capped at the shortest training context of the models that read the text. */
async function textContext(plan: EvalPlan, o: EvalRunOptions): Promise<number> {
  if (o.ctx) return o.ctx;
  const models = [...plan.models, ...(plan.kldBase ? [plan.kldBase] : [])];
  const trained = await Promise.all(models.map((m) => trainedContext(m.entry)));
  return Math.min(DEFAULT_TEXT_CTX, ...trained.filter((n): n is number => typeof n === "number" && n > 0));
}

/** Perplexity, or KL divergence from the base (which gives the perplexity too), of one model on the text. */
async function scoreText(m: EvalModel, plan: EvalPlan, ctxSize: number, o: EvalRunOptions, ctx: BackendContext): Promise<Pick<ModelResult, "perplexity" | "kld">> {
  if (!plan.text) return {};
  const common = { model: m.entry, adapters: m.extraAdapters, label: m.label, textFile: plan.text.file, ctxSize, threads: o.threads, batchSize: o.batch, gpu: o.gpu };
  if (!plan.kldBase) return { perplexity: await perplexity({ ...common, dtype: o.dtype }, ctx) };
  const kld = await klDivergence({ ...common, base: plan.kldBase.entry, baseAdapters: plan.kldBase.extraAdapters, baseLabel: plan.kldBase.label }, ctx);
  return { kld: { ...kld, base: plan.kldBase.label } };
}

async function evaluateModel(m: EvalModel, plan: EvalPlan, textCtx: number, o: EvalRunOptions, ctx: BackendContext): Promise<ModelResult> {
  const started = performance.now();
  const parallel = o.parallel ?? DEFAULT_PARALLEL;
  const tasks = plan.tasks.length > 0 ? await scoreTasks(m, plan, parallel, o, ctx) : { tasks: [], threads: o.threads, adapters: [...(m.entry.adapters ?? []), ...m.extraAdapters] };
  const text = await scoreText(m, plan, textCtx, o, ctx);
  return {
    label: m.label,
    model: m.entry.name,
    path: m.entry.path,
    ...tasks,
    ...text,
    stored: false,
    parallel,
    seconds: (performance.now() - started) / 1000,
  };
}

/** Room in each sequence's context for the chat template's own text (markers, a stock system prompt). */
const TEMPLATE_SLACK = 256;

/**
 * Context of each parallel sequence: --ctx, else what the longest question can need, capped at the
 * model's training context (and 4096). No tokenizer turns text into more tokens than it has UTF-8
 * bytes (byte fallback is one token per byte), so bytes + template slack + the answer is an upper
 * bound; short questions then get small contexts and `--parallel` sequences cost little memory.
 * A question that still does not fit is an error that names it.
 */
async function taskContext(m: EvalModel, plan: EvalPlan, o: EvalRunOptions): Promise<number | undefined> {
  if (o.ctx) return o.ctx;
  const bytes = (s: string) => Buffer.byteLength(s, "utf8");
  let need = 0;
  for (const t of plan.tasks) {
    for (const item of t.items) {
      const prompt = item.messages.reduce((n, msg) => n + bytes(msg.content), 0);
      const answer = "choices" in item ? Math.max(...item.choices.map(bytes)) : (o.maxTokens ?? EVAL_MAX_TOKENS);
      need = Math.max(need, prompt + answer + TEMPLATE_SLACK);
    }
  }
  const trained = await trainedContext(m.entry);
  return Math.min(Math.ceil(need / 256) * 256, trained ?? 4096, 4096);
}

/** Loads the model once with `parallel` sequences and scores every task on it. */
async function scoreTasks(m: EvalModel, plan: EvalPlan, parallel: number, o: EvalRunOptions, ctx: BackendContext): Promise<Pick<ModelResult, "tasks" | "threads" | "adapters">> {
  const stepId = `model:${m.label}`;
  emit(ctx.onEvent, { type: "step", id: stepId, status: "start", title: `Loading ${m.label}` });
  const model = await loadRuntimeModel(m.entry, { gpu: o.gpu, lora: m.extraAdapters, contextSize: await taskContext(m, plan, o), threads: o.threads, batchSize: o.batch, sequences: parallel, dtype: o.dtype, verbose: o.verbose }, ctx);
  const tasks: TaskResult[] = [];
  try {
    // What the first question would pay for (llama.cpp resolves its chat template, ~0.5 s) is paid before
    // the questions are timed: questions/s measures answering, as it did before the runtime interface.
    await model.warmUp?.();
    emit(ctx.onEvent, { type: "step", id: stepId, status: "done", title: `Loaded ${m.label}`, detail: `${countOf(model.threads, "thread")}, ${countOf(parallel, "sequence")} of ${model.contextSize} tokens` });
    for (const task of plan.tasks) {
      const id = `task:${m.label}:${task.name}`;
      emit(ctx.onEvent, { type: "step", id, status: "start", title: `${m.label}: ${task.name} (${task.items.length} questions)` });
      const score = task.kind === "generate" ? await scoreGeneration(model, task, o, id, ctx) : await scoreChoices(model, task, id, ctx);
      const headline = score.kind === "generate" ? `${(score.accuracy.value * 100).toFixed(1)} % ${score.match}` : `acc ${(score.acc.value * 100).toFixed(1)} %, acc_norm ${(score.accNorm.value * 100).toFixed(1)} %`;
      emit(ctx.onEvent, { type: "step", id, status: "done", title: `${m.label}: ${task.name}`, detail: `${headline}, ${score.questionsPerSecond.toFixed(1)} questions/s` });
      tasks.push({ task: task.name, file: task.file, sha256: task.sha256, score });
    }
  } finally {
    await model.dispose();
  }
  return { tasks, threads: model.threads, adapters: model.adapters };
}

/** Says before the scoring, not only after it, that the results will have nowhere to go. */
function warnIfUnstorable(plan: EvalPlan, o: EvalRunOptions, ctx: BackendContext): void {
  if (o.store === false || !plan.models.some((m) => !whyNotStored(m.entry, m.label, m.extraAdapters.length))) return;
  const home = slmPaths().home;
  const why = unwritableReason(home);
  if (why) emit(ctx.onEvent, { type: "log", level: "warn", message: `The results cannot be saved: ${why.at} ${UNWRITABLE_REASON[why.reason]}. The scores will still be printed; --no-store skips saving.` });
}

/**
 * Evaluates each model of the plan in turn (one loaded at a time, so memory holds one model), then
 * stores every registered model's results in one registry update per model. A failure to store is
 * returned as `storeError` beside the scores, never thrown over them.
 */
export async function runEval(plan: EvalPlan, o: EvalRunOptions, ctx: BackendContext = {}): Promise<EvalResult> {
  const date = new Date().toISOString();
  const textCtx = plan.text ? await textContext(plan, o) : 0;
  const models: ModelResult[] = [];
  let storeError: SlmError | undefined;
  warnIfUnstorable(plan, o, ctx);
  for (const m of plan.models) models.push(await evaluateModel(m, plan, textCtx, o, ctx));
  for (const [i, r] of models.entries()) {
    const m = plan.models[i]!;
    const reason = o.store === false ? "--no-store" : whyNotStored(m.entry, m.label, m.extraAdapters.length);
    if (reason) {
      r.notStored = reason;
      continue;
    }
    try {
      r.stored = await storeEvals(m.entry, [...r.tasks.map((t) => taskRecord(t, o, date, m.entry)), ...textRecords(r, plan, textCtx, date, m.entry)]);
      if (!r.stored) r.notStored = `${m.entry.name} is no longer registered`;
    } catch (err) {
      // The scores cost minutes to compute: hand them back with the failure instead of losing them.
      storeError = storageErrorOf(err) ?? (err instanceof SlmError ? err : new SlmError(`Could not save the results: ${(err as Error).message}`, { cause: err }));
      r.notStored = `storing failed: ${storeError.message.replace(/\.$/, "")}`;
    }
  }
  return {
    ...(storeError ? { storeError } : {}),
    models,
    tasks: plan.tasks.map((t) => ({ name: t.name, file: t.file, sha256: t.sha256, kind: t.kind, questions: t.items.length, total: t.total })),
    text: plan.text ? { ...plan.text, ctx: textCtx, kldBase: plan.kldBase?.label } : undefined,
    settings: { match: o.match, ...(o.limit !== undefined ? { limit: o.limit } : {}), maxTokens: o.maxTokens ?? EVAL_MAX_TOKENS, temperature: o.temperature ?? 0 },
    date,
  };
}
