import { emit, type BackendContext } from "../../core/events.js";
import { UsageError } from "../../core/errors.js";
import type { LoadedModel } from "../llama/loader.js";
import type { LoraSpec } from "../llama/lora.js";
import type { GpuChoice } from "../llama/runtime.js";
import { bosOf, tokenizeText } from "../llama/prompt.js";
import { checkContextSize, planChunks, readEvalText } from "./chunks.js";
import { scoreChunks, scoringLanes } from "./lockstep.js";
import { openReaders } from "../llama/logprobs.js";
import { prepareNativeRows } from "../llama/native/probe.js";
import type { ModelEntry } from "../store/types.js";
import { loadForScoring } from "./perplexity.js";
import { Moments, meanAndUncertainty, medianSorted, perplexityEstimate, percentileSorted, shareWithError } from "./stats.js";
import { countOf } from "../../core/format.js";

export interface KldOptions {
  /** The model under test (e.g. a quantization), resolved and made runnable by the caller. */
  model: ModelEntry;
  adapters?: LoraSpec[];
  /** The reference model whose distribution the KL divergence is measured from (e.g. the F16/F32 source). */
  base: ModelEntry;
  baseAdapters?: LoraSpec[];
  textFile: string;
  ctxSize: number;
  threads?: number;
  batchSize?: number;
  gpu?: GpuChoice;
  /** How the steps name the model and the base: the table's labels, which name extra adapters (default: their names). */
  label?: string;
  baseLabel?: string;
}

export interface KldResult {
  /** Mean KL(base ‖ model) per scored token, in nats, and its standard error. */
  mean: number;
  meanError: number;
  median: number;
  /** 99th percentile (linear interpolation, as llama-perplexity). */
  p99: number;
  max: number;
  /** Share of positions where both models' most likely token is the same, and its standard error. */
  sameTop: number;
  sameTopError: number;
  ppl: number;
  pplError: number;
  basePpl: number;
  basePplError: number;
  tokens: number;
  chunks: number;
  ctxSize: number;
  seconds: number;
}

export { klDivergenceOfRows } from "../llama/measure.js";

/**
 * KL divergence of a model's next-token distributions from a base model's on the same text and
 * chunks, like `llama-perplexity --kl-divergence`, but exact over the full vocabulary (llama-perplexity
 * stores the base's log-probabilities as 16-bit values and skips tokens under e^-16).
 *
 * Both models are loaded at once and walk the chunks in lock-step (lockstep.ts): each scored position
 * is compared as soon as both rows exist, so memory holds a few rows, never the base's distributions
 * for the whole text (which llama-perplexity writes to a file: n_vocab × 2 bytes per token, e.g.
 * 300 KB per token for a 150k vocabulary). The price is both models' weights in memory together.
 */
export async function klDivergence(o: KldOptions, ctx: BackendContext = {}): Promise<KldResult> {
  checkContextSize(o.ctxSize, o.batchSize);
  const text = readEvalText(o.textFile);
  const opened: LoadedModel[] = [];
  try {
    const labels = { model: o.label ?? o.model.name, base: o.baseLabel ?? o.base.name };
    for (const [id, p, adapters, label] of [["kld:load-base", o.base, o.baseAdapters, labels.base], ["kld:load", o.model, o.adapters, labels.model]] as const) {
      emit(ctx.onEvent, { type: "step", id, status: "start", title: `Loading ${label}` });
      const loaded = await loadForScoring(p, { ...o, adapters }, ctx);
      opened.push(loaded);
      emit(ctx.onEvent, { type: "step", id, status: "done", title: `Loaded ${label}`, detail: `${countOf(loaded.settings.threads, "thread")}, ${loaded.loadMs} ms` });
    }
    return await klDivergenceOf(opened[0]!, opened[1]!, text, o.ctxSize, o.batchSize, ctx, labels);
  } finally {
    for (const l of opened) await l.dispose();
  }
}

/** KL divergence on two models loaded by loadForScoring with the same `ctxSize` and `batchSize`. */
export async function klDivergenceOf(base: LoadedModel, model: LoadedModel, text: string, ctxSize: number, batchSize: number | undefined, ctx: BackendContext = {}, labels = { model: model.entry.name, base: base.entry.name }): Promise<KldResult> {
  const tokens = tokenizeText(model.model, text);
  const baseTokens = tokenizeText(base.model, text);
  if (base.summary.vocabSize !== model.summary.vocabSize || baseTokens.length !== tokens.length || baseTokens.some((t, i) => t !== tokens[i])) {
    throw new UsageError(`${model.entry.name} and ${base.entry.name} do not share a vocabulary (${model.summary.vocabSize} and ${base.summary.vocabSize} tokens, or the text tokenises differently): their distributions cannot be compared.`, {
      hint: "Compare a model with the model it was derived from (e.g. a quantization with its source).",
    });
  }
  const plan = planChunks(tokens.length, ctxSize, batchSize);
  const prepared = [await prepareNativeRows(base, ctx), await prepareNativeRows(model, ctx)];
  const native = prepared.every((a) => a !== undefined);
  const lanes = scoringLanes(Math.max(base.settings.threads, model.settings.threads), native);
  const baseReaders = await openReaders(base, lanes);
  const modelReaders = await openReaders(model, lanes).catch(async (err: unknown) => {
    await baseReaders.dispose();
    throw err;
  });
  const values = new Float64Array(plan.chunks * plan.scoredPerChunk);
  const kld = new Moments();
  const nll = new Moments();
  const nllBase = new Moments();
  let sameTop = 0;
  const stepId = "kld";
  const title = `KL divergence of ${labels.model} from ${labels.base}`;
  emit(ctx.onEvent, { type: "step", id: stepId, status: "start", title, detail: `${plan.chunks} chunks of ${ctxSize} tokens` });
  try {
    const { seconds } = await scoreChunks(
      baseReaders.readers.map((b, l) => [b, modelReaders.readers[l]!]),
      tokens,
      plan,
      bosOf(model.model),
      (r, k, index) => {
        const v = r.kl![k]!;
        values[index] = v;
        kld.add(v);
        nll.add(-r.logprob[1]![k]!);
        nllBase.add(-r.logprob[0]![k]!);
        if (r.top[0]![k] === r.top[1]![k]) sameTop++;
      },
      true,
      { ...ctx, stepId, onRunning: (done) => emit(ctx.onEvent, { type: "metric", name: "kld", value: kld.mean, step: done }) },
    );
    values.sort();
    const mean = meanAndUncertainty(kld);
    const top = shareWithError(sameTop, kld.count);
    const p = perplexityEstimate(nll);
    const pb = perplexityEstimate(nllBase);
    emit(ctx.onEvent, { type: "step", id: stepId, status: "done", title, detail: `mean ${mean.mean.toFixed(6)} ± ${mean.error.toFixed(6)}, same top ${(top.share * 100).toFixed(2)} %` });
    return {
      mean: mean.mean,
      meanError: mean.error,
      median: medianSorted(values),
      p99: percentileSorted(values, 0.99),
      max: values.length > 0 ? values[values.length - 1]! : 0,
      sameTop: top.share,
      sameTopError: top.error,
      ppl: p.ppl,
      pplError: p.pplError,
      basePpl: pb.ppl,
      basePplError: pb.pplError,
      tokens: kld.count,
      chunks: plan.chunks,
      ctxSize,
      seconds,
    };
  } catch (err) {
    emit(ctx.onEvent, { type: "step", id: stepId, status: "fail", title, detail: (err as Error).message });
    throw err;
  } finally {
    await modelReaders.dispose();
    await baseReaders.dispose();
  }
}
