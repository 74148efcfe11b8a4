import type { LlamaContext } from "node-llama-cpp";
import { SlmError } from "../../core/errors.js";
import type { BackendContext } from "../../core/events.js";
import type { LoadedModel } from "./loader.js";
import { type AddonSampler, type DistributionRow, fillRow, greedySampler, logProbOf } from "./logprobs.js";
import type { NativeRowsHandle } from "./likelihood.js";
import { nativeRowsFor, prepareNativeRows } from "./native/probe.js";
import { rawSampleToken } from "./serialSampling.js";

/** A token and its log-probability under the model's own distribution (temperature 1, no cut). */
export interface TopLogprob {
  token: number;
  logprob: number;
}

/** What one output row says about a token that follows it, and the row's most likely tokens. */
export interface RowLogprobs {
  /** ln p(target). */
  logprob: number;
  /** The `topK` most likely tokens, most likely first (ties: lowest id first). */
  top: TopLogprob[];
}

/**
 * Reads output rows of a context's last llama_decode. A row is valid only until the context's next
 * decode or sample: read it from a tapSamples listener (serialSampling.ts) or right after a decode of
 * one's own.
 */
export interface LogitRows {
  /** Whether rows are read by slm's native addon (fast) or through node-llama-cpp's sampler (exact, slow). */
  readonly native: boolean;
  read(batchIndex: number, target: number, topK: number): Promise<RowLogprobs>;
  dispose(): void;
}

/**
 * The exact slow path: node-llama-cpp's greedy sampler hands back softmax(logits) of every token (see
 * logprobs.ts), renormalised here in float64. ~20 ms a row at a 49k vocabulary, mostly JavaScript.
 */
export class SamplerRows implements LogitRows {
  readonly native = false;
  private readonly row: DistributionRow;
  private readonly sampler: AddonSampler;
  private readonly sample: ReturnType<typeof rawSampleToken>;

  constructor(
    loaded: LoadedModel,
    context: LlamaContext,
    private readonly vocabSize: number,
  ) {
    this.sampler = greedySampler(loaded);
    this.sample = rawSampleToken(context);
    this.row = { probs: new Float64Array(vocabSize), logNorm: 0, top: 0 };
  }

  async read(batchIndex: number, target: number, topK: number): Promise<RowLogprobs> {
    const [, flat] = (await this.sample(batchIndex, this.sampler, true)) as [number, number[] | undefined, unknown];
    const row = fillRow(this.row, flat, this.vocabSize);
    const top: TopLogprob[] = [];
    // Sorted by logit already; equal logits come in sampler order, so put the lowest id first.
    for (let i = 0; i < Math.min(topK, this.vocabSize); i++) top.push({ token: flat![2 * i]!, logprob: logProbOf(row, flat![2 * i]!) });
    top.sort((a, b) => b.logprob - a.logprob || a.token - b.token);
    return { logprob: logProbOf(row, target), top };
  }

  dispose(): void {
    this.sampler.dispose();
  }
}

/**
 * slm's addon (native/slm_logits.cc): a log-softmax over llama_get_logits_ith in C++ with double
 * accumulation and a partial sort for the top tokens, ~0.3 ms a row at a 49k vocabulary. Synchronous on
 * the calling thread, so it must run where the row is valid (a tapSamples listener, or right after a
 * decode of one's own).
 */
class NativeRows implements LogitRows {
  readonly native = true;

  constructor(private readonly h: NativeRowsHandle) {}

  async read(batchIndex: number, target: number, topK: number): Promise<RowLogprobs> {
    const r = this.h.addon.topRow(this.h.handle, batchIndex, target, topK);
    const top: TopLogprob[] = [];
    for (let j = 1; j < r.length; j += 2) top.push({ token: r[j]!, logprob: r[j + 1]! });
    return { logprob: r[0]!, top };
  }

  dispose(): void {}
}

/**
 * Makes `logitRowsFor` answer with the native reader for `loaded`'s contexts when it can: builds slm's
 * addon on first use (a visible step of a few seconds, once per machine), loads it, and probes it once
 * per model against the slow exact path. When it cannot, logs why once per process (a `log` event) and
 * `logitRowsFor` keeps answering with the slow exact reader. Cheap after the first call for a model.
 */
export async function prepareLogitRows(loaded: LoadedModel, ctx: BackendContext = {}): Promise<void> {
  await prepareNativeRows(loaded, ctx);
}

/**
 * The fastest exact reader of `context`'s rows available here (`context` is one of `loaded`'s model):
 * the native one once `prepareLogitRows(loaded)` accepted it, else the slow sampler path.
 */
export function logitRowsFor(loaded: LoadedModel, context: LlamaContext = loaded.context): LogitRows {
  const V = loaded.summary.vocabSize;
  if (!V) throw new SlmError(`${loaded.entry.name} does not state its vocabulary size in its GGUF header.`);
  const native = nativeRowsFor(loaded, context);
  return native ? new NativeRows(native) : new SamplerRows(loaded, context, V);
}
