import { emit, type BackendContext } from "../../core/events.js";
import { type LoadedModel, loadModel } from "../llama/loader.js";
import type { LoraSpec } from "../llama/lora.js";
import type { GpuChoice } from "../llama/runtime.js";
import type { OnnxDtype } from "../onnx/layout.js";
import { loadRuntimeModel } from "../runtime/load.js";
import type { ModelEntry } from "../store/types.js";
import { bosOf, tokenizeText } from "../llama/prompt.js";
import { checkContextSize, decodeShape, planChunks, readEvalText } from "./chunks.js";
import { scoreChunks, scoringLanes } from "./lockstep.js";
import { openReaders } from "../llama/logprobs.js";
import { prepareNativeRows } from "../llama/native/probe.js";
import { Moments, perplexityEstimate } from "./stats.js";
import { countOf } from "../../core/format.js";

export interface PerplexityOptions {
  /**
   * The model as resolved and made runnable by the caller (a Hugging Face/GPTQ/AWQ model's converted GGUF):
   * resolving the user's reference again here would find the folder, not the GGUF it runs as.
   */
  model: ModelEntry;
  /** LoRA adapters on top of the model (after those of a registered "base + adapter" model). */
  adapters?: LoraSpec[];
  textFile: string;
  /** Tokens per chunk (llama-perplexity's -c). */
  ctxSize: number;
  threads?: number;
  /** Tokens per llama_decode (llama-perplexity's physical batch, -ub; default 512): batchSize / ctxSize chunks go together. */
  batchSize?: number;
  gpu?: GpuChoice;
  /** How the steps name the model: the table's label, which names extra adapters (default: its name). */
  label?: string;
  /** ONNX models: the variant to load. */
  dtype?: OnnxDtype;
}

export interface PerplexityResult {
  ppl: number;
  /** llama-perplexity's ± (standard error of the mean NLL, times the perplexity). */
  pplError: number;
  /** Tokens scored (llama-perplexity's count: (ctx − 1 − ctx/2) per chunk). */
  tokens: number;
  chunks: number;
  ctxSize: number;
  /** Tokens of the whole text, BOS included. */
  textTokens: number;
  /** Time spent evaluating the chunks (not loading or tokenising). */
  seconds: number;
  /** Tokens evaluated (chunks × ctx) per second: the figure to set against llama-perplexity's. */
  tokensPerSecond: number;
}

/** Loads a model with one sequence of `ctxSize` tokens per chunk decoded at once (chunks.ts). */
export async function loadForScoring(entry: ModelEntry, o: { adapters?: LoraSpec[]; ctxSize: number; threads?: number; batchSize?: number; gpu?: GpuChoice }, ctx: BackendContext): Promise<LoadedModel> {
  const shape = decodeShape(o.ctxSize, o.batchSize);
  return loadModel(entry, { lora: o.adapters, contextSize: o.ctxSize, batchSize: shape.batchSize, threads: o.threads, gpu: o.gpu, sequences: shape.parallel }, ctx);
}

/**
 * Perplexity of a text file computed the way llama-perplexity computes it (see chunks.ts for the
 * chunking): exp of the mean negative log-likelihood of every scored token, with its ± estimate. The
 * model loads on its runtime with the shape loadForScoring gives llama.cpp.
 */
export async function perplexity(o: PerplexityOptions, ctx: BackendContext = {}): Promise<PerplexityResult> {
  checkContextSize(o.ctxSize, o.batchSize);
  const text = readEvalText(o.textFile);
  emit(ctx.onEvent, { type: "step", id: "perplexity:load", status: "start", title: `Loading ${o.label ?? o.model.name}` });
  const shape = decodeShape(o.ctxSize, o.batchSize);
  const model = await loadRuntimeModel(o.model, { lora: o.adapters, contextSize: o.ctxSize, batchSize: shape.batchSize, threads: o.threads, gpu: o.gpu, sequences: shape.parallel, dtype: o.dtype }, ctx);
  try {
    emit(ctx.onEvent, { type: "step", id: "perplexity:load", status: "done", title: `Loaded ${o.label ?? model.entry.name}`, detail: `${countOf(model.threads, "thread")}, ${model.loadMs} ms` });
    return await model.perplexity(text, { ctxSize: o.ctxSize, batchSize: o.batchSize, label: o.label }, ctx);
  } finally {
    await model.dispose();
  }
}

/** Perplexity on a model loaded by loadForScoring with the same `ctxSize` and `batchSize`. */
export async function perplexityOf(loaded: LoadedModel, text: string, ctxSize: number, batchSize: number | undefined, ctx: BackendContext = {}, label = loaded.entry.name): Promise<PerplexityResult> {
  const tokens = tokenizeText(loaded.model, text);
  const plan = planChunks(tokens.length, ctxSize, batchSize);
  const native = (await prepareNativeRows(loaded, ctx)) !== undefined;
  const opened = await openReaders(loaded, scoringLanes(loaded.settings.threads, native));
  const nll = new Moments();
  const stepId = "perplexity";
  const title = `Perplexity of ${label}`;
  emit(ctx.onEvent, { type: "step", id: stepId, status: "start", title, detail: `${plan.chunks} chunks of ${ctxSize} tokens` });
  try {
    const { seconds } = await scoreChunks(
      opened.readers.map((r) => [r]),
      tokens,
      plan,
      bosOf(loaded.model),
      (m, k) => nll.add(-m.logprob[0]![k]!),
      false,
      { ...ctx, stepId, onRunning: (done) => emit(ctx.onEvent, { type: "metric", name: "ppl", value: perplexityEstimate(nll).ppl, step: done }) },
    );
    const { ppl, pplError } = perplexityEstimate(nll);
    emit(ctx.onEvent, { type: "step", id: stepId, status: "done", title, detail: `${ppl.toFixed(4)} ± ${pplError.toFixed(5)}` });
    return { ppl, pplError, tokens: nll.count, chunks: plan.chunks, ctxSize, textTokens: tokens.length, seconds, tokensPerSecond: (plan.chunks * ctxSize) / seconds };
  } catch (err) {
    emit(ctx.onEvent, { type: "step", id: stepId, status: "fail", title, detail: (err as Error).message });
    throw err;
  } finally {
    await opened.dispose();
  }
}
