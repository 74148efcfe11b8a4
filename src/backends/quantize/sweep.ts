import { existsSync, readFileSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { NotFoundError, UsageError } from "../../core/errors.js";
import { emit, type BackendContext, type SlmEvent } from "../../core/events.js";
import type { ChoiceScore } from "../eval/choice.js";
import { type EvalResult, type EvalRunOptions, type ModelResult, runEval } from "../eval/evaluate.js";
import type { GenerationScore } from "../eval/generation.js";
import { type EvalPlan, planEval } from "../eval/plan.js";
import { benchModel } from "../runtime/bench.js";
import type { LlamaCppTool } from "../llamacpp/tools.js";
import { assertFreeName, derivedName, derivedWorkDir } from "../store/derived.js";
import { removeModel } from "../store/remove.js";
import { resolveModel } from "../store/resolve.js";
import type { ModelEntry } from "../store/types.js";
import { looksLikeJsonl } from "./calibration.js";
import { type ImatrixInfo, type QuantizePlan, type QuantizeRequest, computeImatrix, listQuantTypes, planQuantize, runQuantize } from "./quantize.js";
import { reusableQuant } from "./sweepReuse.js";
import { type Candidate, type Verdict, closest, paretoFront, recommend, verdict } from "./sweepPick.js";
import { bitClass, canonicalType, isUnquantized, suggest } from "./types.js";

/**
 * `slm quantize --sweep`: quantize one source to several types, measure each against the source on
 * the same text and tasks (size, bits per weight, KL divergence, perplexity, generation speed, task
 * scores), mark the Pareto-optimal types and recommend the smallest one that stays close enough.
 * Each type is made by runQuantize (atomic, registered with its lineage) and scored by the eval
 * backend (runEval, which stores the results with the model), one after the other.
 */
export const DEFAULT_SWEEP_TYPES = ["Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K"] as const;
export const DEFAULT_MAX_KLD = 0.05;
export const DEFAULT_MAX_DROP = 0.02;
/** Generation speed: llama-bench's tg test (one token per decode, no prompt) of this many tokens, repeated. */
export const SWEEP_GEN_TOKENS = 64;
export const SWEEP_GEN_REPETITIONS = 3;

export type Keep = "all" | "best";

export interface SweepRequest extends Omit<QuantizeRequest, "type" | "bits" | "out" | "lowBitWithoutImatrix"> {
  /** As typed (any case; "Q8_0,Q4_K_M" splits); empty → DEFAULT_SWEEP_TYPES. */
  types: string[];
  /** --out: models are named <prefix>-<type> instead of <source>-<type>. */
  prefix?: string;
  /** The text the KLD and perplexity are measured on; default: the --calibration file when it is plain text. */
  text?: string;
  tasks?: string[];
  limit?: number;
  /** Questions scored at once per model (slm eval's --parallel); default DEFAULT_PARALLEL. */
  parallel?: number;
  maxKld?: number;
  maxDrop?: number;
  keep?: Keep;
}

export interface SweepPlan {
  request: SweepRequest;
  /** The source checked by planQuantize (its type is the first of the sweep's; each run sets its own). */
  quantize: QuantizePlan;
  /** Upper-cased as typed; made canonical against llama-quantize's list when the sweep runs. */
  types: string[];
  text: { file: string; from: "--text" | "--calibration" };
  /** The source with the tasks and the text, checked and read once; every type reuses the tasks. */
  evalPlan: EvalPlan;
  maxKld: number;
  maxDrop: number;
  keep: Keep;
}

export interface SweepModel {
  name: string;
  path: string;
  size: number;
  bitsPerWeight?: number;
  /** Generation tokens/s (mean and sample standard deviation over the repetitions). */
  genTokensPerSecond: number;
  genStddev: number;
  /** Task scores, KLD (types) or perplexity (source), as the eval backend returns them. */
  eval: ModelResult;
}

export interface SweepRow extends SweepModel {
  type: string;
  imatrix: boolean;
  pareto: boolean;
  verdict: Verdict;
  /** Removed again by --keep best. */
  removed: boolean;
  /** Registered before the sweep by an identical `slm quantize`: measured, not made again, never removed by --keep. */
  reused?: boolean;
  warnings: string[];
}

export interface SweepResult {
  source: SweepModel & { fileType?: string };
  rows: SweepRow[];
  /** Type of the recommended row, if one met the rule. */
  recommended?: string;
  rule: { maxKld: number; maxDrop: number; sourceScores: Record<string, number> };
  keep: Keep;
  kept: string[];
  removed: string[];
  text: NonNullable<EvalResult["text"]> & { from: "--text" | "--calibration" };
  tasks: EvalResult["tasks"];
  settings: EvalResult["settings"];
  /** Where the one importance matrix came from (each kept model has its own copy, named in its lineage). */
  imatrix?: Omit<ImatrixInfo, "path">;
  generation: { tokens: number; repetitions: number };
  date: string;
  seconds: number;
}

/** "q8_0,Q4_K_M" "q2_k" → ["Q8_0", "Q4_K_M", "Q2_K"]; checks what can be checked without llama-quantize. */
export function sweepTypes(input: readonly string[]): string[] {
  const types = input.flatMap((t) => t.split(/[\s,]+/)).filter(Boolean).map((t) => t.toUpperCase());
  if (types.length === 0) return [...DEFAULT_SWEEP_TYPES];
  for (const t of types) {
    if (!/^\d+$/.test(t) && bitClass(t) === undefined) {
      const close = suggest(t, DEFAULT_SWEEP_TYPES);
      throw new UsageError(`--sweep: "${t}" is not a quantization type.`, { hint: `${close.length ? `Did you mean ${close.join(" or ")}? ` : ""}The default sweep is ${DEFAULT_SWEEP_TYPES.join(" ")}.` });
    }
    if (isUnquantized(t)) throw new UsageError(`--sweep compares quantized types with the source; ${t} is not one.`);
  }
  assertNoRepeats(types);
  return types;
}

function assertNoRepeats(types: readonly string[]): void {
  const twice = types.find((t, i) => types.indexOf(t) !== i);
  if (twice) throw new UsageError(`--sweep names ${twice} twice.`);
}

/**
 * llama-quantize refuses the IQ types (and Q2_K_S) without an importance matrix, so a sweep cannot
 * make them without one; Q2_K and Q3_K it makes with a warning, and the table shows what they lose.
 */
function assertImatrixFor(type: string, req: SweepRequest): void {
  if (req.imatrix || req.calibration || !(type.startsWith("IQ") || type === "Q2_K_S")) return;
  throw new UsageError(`--sweep: ${type} cannot be made without an importance matrix.`, { hint: "Add --calibration FILE (or --imatrix FILE), or leave that type out." });
}

function sweepText(req: SweepRequest): SweepPlan["text"] {
  if (req.text) {
    if (!existsSync(req.text)) throw new NotFoundError(`--text file not found: ${path.resolve(req.text)}`);
    return { file: req.text, from: "--text" };
  }
  if (req.calibration) {
    if (looksLikeJsonl(req.calibration, readFileSync(req.calibration, "utf8").slice(0, 65536))) {
      throw new UsageError("--sweep measures each type on a text, and the --calibration file is chat JSONL: give the text with --text FILE.");
    }
    return { file: req.calibration, from: "--calibration" };
  }
  throw new UsageError("--sweep compares each type with the source on a text: give --text FILE (or --calibration FILE with plain text).");
}

/** Checks every flag, the source, the text and the task files before any tool is needed. Nothing is written. */
export async function planSweep(req: SweepRequest): Promise<SweepPlan> {
  const types = sweepTypes(req.types);
  const maxKld = req.maxKld ?? DEFAULT_MAX_KLD;
  const maxDrop = req.maxDrop ?? DEFAULT_MAX_DROP;
  if (!(maxKld > 0) || !Number.isFinite(maxKld)) throw new UsageError(`--max-kld must be a positive number (got ${maxKld}).`);
  if (!(maxDrop >= 0 && maxDrop <= 1)) throw new UsageError(`--max-drop is an absolute share between 0 and 1, e.g. 0.02 for 2 points (got ${maxDrop}).`);
  const tasks = req.tasks ?? [];
  if (tasks.length === 0 && req.limit !== undefined) throw new UsageError("--limit limits the --task questions: give --task FILE.jsonl too.");
  if (tasks.length === 0 && req.maxDrop !== undefined) throw new UsageError("--max-drop compares task scores with the source's: give --task FILE.jsonl too.");
  if (tasks.length === 0 && req.parallel !== undefined) throw new UsageError("--parallel sets how many --task questions are scored at once: give --task FILE.jsonl too.");
  for (const t of types) assertImatrixFor(t, req);
  if (resolveModel(req.ref).format !== "gguf") {
    throw new UsageError("--sweep needs a GGUF source, which every type is compared with.", { hint: "Convert the Hugging Face folder first (slm convert MODEL --outtype f16), then sweep the GGUF." });
  }
  const { types: _t, prefix, text: _x, tasks: _k, limit, parallel: _p, maxKld: _m, maxDrop: _d, keep, ...quantizeRequest } = req;
  if (prefix !== undefined) assertFreeName(`${prefix}-${types[0]}`);
  const quantize = await planQuantize({ ...quantizeRequest, type: types[0], lowBitWithoutImatrix: true });
  const text = sweepText(req);
  const evalPlan = await planEval({ models: [req.ref], tasks, perplexity: text.file, limit });
  return { request: req, quantize, types, text, evalPlan, maxKld, maxDrop, keep: keep ?? "all" };
}

/**
 * Step ids get the model they belong to ("Q4_K_M:kld"), so the steps of successive types stay apart,
 * and a notice repeated for every model (e.g. about the inference engine) is passed on once.
 */
function scoped(ctx: BackendContext, seen: Set<string>, prefix: string): BackendContext {
  const sink = ctx.onEvent;
  if (!sink) return ctx;
  return {
    signal: ctx.signal,
    onEvent: (e: SlmEvent) => {
      if (e.type === "step" || e.type === "progress") return sink({ ...e, id: `${prefix}:${e.id}` });
      if (e.type === "log" && e.level !== "debug") {
        if (seen.has(e.message)) return;
        seen.add(e.message);
      }
      sink(e);
    },
  };
}

async function generationSpeed(entry: ModelEntry, threads: number | undefined, ctx: BackendContext): Promise<Pick<SweepModel, "genTokensPerSecond" | "genStddev">> {
  const r = await benchModel(entry, { promptTokens: 0, genTokens: SWEEP_GEN_TOKENS, repetitions: SWEEP_GEN_REPETITIONS, threads }, ctx);
  const tg = r.tests[0]!;
  return { genTokensPerSecond: tg.mean, genStddev: tg.stddev };
}

/** The headline score of a task: accuracy for generation, acc for multiple choice. */
function taskScore(m: ModelResult, task: string): number {
  const s: GenerationScore | ChoiceScore | undefined = m.tasks.find((t) => t.task === task)?.score;
  if (!s) return Number.NaN;
  return s.kind === "generate" ? s.accuracy.value : s.acc.value;
}

/** Canonical names from llama-quantize's own list; an unknown or repeated type stops the sweep before anything runs. */
async function canonicalTypes(plan: SweepPlan, quantizeBin: string, signal?: AbortSignal): Promise<string[]> {
  const known = await listQuantTypes(quantizeBin, signal);
  if (known.length === 0) return plan.types;
  const names = known.map((t) => t.name);
  const types = plan.types.map((t) => {
    const c = canonicalType(t, known);
    if (!c) {
      const close = suggest(t, names);
      throw new UsageError(`--sweep: unknown quantization type "${t}".`, { hint: `${close.length ? `Did you mean ${close.join(" or ")}? ` : ""}llama-quantize knows: ${names.join(", ")}.` });
    }
    if (isUnquantized(c) || c === "COPY") throw new UsageError(`--sweep compares quantized types with the source; ${t} is ${c}.`);
    assertImatrixFor(c, plan.request);
    return c;
  });
  assertNoRepeats(types);
  return types;
}

export interface SweepRunOptions {
  tools: Partial<Record<LlamaCppTool, string>>;
  verbose?: boolean;
}

export async function runSweep(plan: SweepPlan, o: SweepRunOptions, ctx: BackendContext = {}): Promise<SweepResult> {
  const started = performance.now();
  const req = plan.request;
  const source = plan.quantize.source;
  const types = await canonicalTypes(plan, o.tools["llama-quantize"]!, ctx.signal);
  const names = types.map((t) => (req.prefix ? `${req.prefix}-${t}` : derivedName(source, t)));
  const existing = names.map((n, i) => reusableQuant(n, source, types[i]!, plan.quantize.request));
  names.forEach((n, i) => existing[i] || assertFreeName(n));
  const seen = new Set<string>();
  if (plan.text.from === "--calibration") {
    emit(ctx.onEvent, { type: "log", level: "warn", message: "KLD and perplexity are measured on the calibration text, which the importance matrix was fitted to: give --text with other text for an unbiased comparison." });
  }
  const evalOptions: EvalRunOptions = { match: "exact", limit: req.limit, parallel: req.parallel, threads: req.threads, store: true, verbose: o.verbose };

  // The source first: a text too short or a task that fails shows before anything is made.
  const sctx = scoped(ctx, seen, "source");
  const sourceEval = await runEval(plan.evalPlan, evalOptions, sctx);
  if (sourceEval.storeError) throw sourceEval.storeError;
  const sourceModel: SweepResult["source"] = {
    name: source.name,
    path: source.path,
    size: statSync(source.path).size,
    fileType: plan.quantize.sourceFileType,
    eval: sourceEval.models[0]!,
    ...(await generationSpeed(source, req.threads, sctx)),
  };

  const made: Omit<SweepRow, "pareto" | "verdict">[] = [];
  let work: string | undefined;
  let imatrix: ImatrixInfo | undefined;
  try {
    if (req.calibration) {
      work = derivedWorkDir();
      imatrix = await computeImatrix(plan.quantize, source.path, plan.quantize.summary?.contextLength, o.tools, work, ctx);
    }
    for (const [i, type] of types.entries()) {
      const tctx = scoped(ctx, seen, type);
      const reused = existing[i];
      if (reused) emit(ctx.onEvent, { type: "log", level: "info", message: `${reused.name} was made earlier by slm quantize from the same source with the same settings: measuring it, not making it again.` });
      const q = reused
        ? { model: reused, sizeAfter: reused.size, bitsPerWeight: reused.parameters ? (reused.size * 8) / reused.parameters : undefined, imatrix: undefined, warnings: [] as string[], source: { bitsPerWeight: undefined } }
        : await runQuantize({ ...plan.quantize, type, request: { ...plan.quantize.request, out: names[i] } }, { tools: o.tools, imatrix }, tctx);
      sourceModel.bitsPerWeight ??= q.source.bitsPerWeight;
      const evalPlan = { ...(await planEval({ models: [q.model.name], perplexity: plan.text.file }, tctx)), tasks: plan.evalPlan.tasks, kldBase: plan.evalPlan.models[0] };
      const r = await runEval(evalPlan, evalOptions, tctx);
      if (r.storeError) throw r.storeError;
      made.push({
        type,
        name: q.model.name,
        path: q.model.path,
        size: q.sizeAfter,
        bitsPerWeight: q.bitsPerWeight,
        imatrix: !!q.imatrix,
        eval: r.models[0]!,
        ...(await generationSpeed(q.model, req.threads, tctx)),
        removed: false,
        ...(reused ? { reused: true } : {}),
        warnings: q.warnings,
      });
    }
  } catch (err) {
    // Finished models are registered and valid: say which, since the error replaces the table.
    if (made.length > 0) emit(ctx.onEvent, { type: "log", level: "warn", message: `The sweep stopped; these finished models stay registered: ${made.map((r) => r.name).join(", ")}.` });
    throw err;
  } finally {
    if (work) rmSync(work, { recursive: true, force: true });
  }

  const taskNames = sourceEval.tasks.map((t) => t.name);
  const rule = { maxKld: plan.maxKld, maxDrop: plan.maxDrop, sourceScores: taskNames.map((t) => taskScore(sourceModel.eval, t)) };
  const candidates: Candidate[] = made.map((r) => ({ size: r.size, kld: r.eval.kld!.mean, scores: taskNames.map((t) => taskScore(r.eval, t)) }));
  const pareto = paretoFront(candidates);
  const rows: SweepRow[] = made.map((r, i) => ({ ...r, pareto: pareto[i]!, verdict: verdict(candidates[i]!, rule) }));
  const best = recommend(candidates, rule);

  const removed: string[] = [];
  if (plan.keep === "best") {
    const keepIndex = best ?? closest(candidates)!;
    if (best === undefined) emit(ctx.onEvent, { type: "log", level: "warn", message: `No type met the rule; --keep best keeps the one closest to the source, ${rows[keepIndex]!.name}.` });
    for (const [i, r] of rows.entries()) {
      if (i === keepIndex || r.reused) continue;
      await removeModel(r.name);
      r.removed = true;
      removed.push(r.name);
    }
  }
  return {
    source: sourceModel,
    rows,
    recommended: best === undefined ? undefined : rows[best]!.type,
    rule: { ...rule, sourceScores: Object.fromEntries(taskNames.map((t, i) => [t, rule.sourceScores[i]!])) },
    keep: plan.keep,
    kept: rows.filter((r) => !r.removed).map((r) => r.name),
    removed,
    text: { ...sourceEval.text!, from: plan.text.from },
    tasks: sourceEval.tasks,
    settings: sourceEval.settings,
    imatrix: imatrix && { source: imatrix.source, calibration: imatrix.calibration },
    generation: { tokens: SWEEP_GEN_TOKENS, repetitions: SWEEP_GEN_REPETITIONS },
    date: sourceEval.date,
    seconds: (performance.now() - started) / 1000,
  };
}
