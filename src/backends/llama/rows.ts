import type { LlamaContext } from "node-llama-cpp";
import { SlmError } from "../../core/errors.js";
import type { LoadedModel } from "./loader.js";
import { type DistributionRow, fillRow, logProbOf } from "./logprobs.js";
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

interface GreedySampler {
  applyConfig(config: { temperature: number }): void;
  dispose(): void;
}

/**
 * The exact slow path: node-llama-cpp's greedy sampler hands back softmax(logits) of every token (see
 * logprobs.ts), renormalised here in float64. ~20 ms a row at a 49k vocabulary, mostly JavaScript.
 */
class SamplerRows implements LogitRows {
  readonly native = false;
  private readonly row: DistributionRow;
  private readonly sampler: GreedySampler;
  private readonly sample: ReturnType<typeof rawSampleToken>;

  constructor(
    loaded: LoadedModel,
    context: LlamaContext,
    private readonly vocabSize: number,
  ) {
    const Sampler = (loaded.llama as unknown as { _bindings?: { AddonSampler?: new (model: unknown) => GreedySampler } })._bindings?.AddonSampler;
    const model = (loaded.model as unknown as { _model?: unknown })._model;
    if (typeof Sampler !== "function" || model === undefined) {
      throw new SlmError("This node-llama-cpp build does not expose the native sampler slm reads log-probabilities with (it expects node-llama-cpp 3.21.1 exactly).", {
        hint: "Reinstall slm's dependencies (npm ci) so that node-llama-cpp is the pinned version.",
      });
    }
    this.sampler = new Sampler(model);
    this.sampler.applyConfig({ temperature: 0 });
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

/** The fastest exact reader of `context`'s rows available here (`context` is one of `loaded`'s model). */
export function logitRowsFor(loaded: LoadedModel, context: LlamaContext = loaded.context): LogitRows {
  const V = loaded.summary.vocabSize;
  if (!V) throw new SlmError(`${loaded.entry.name} does not state its vocabulary size in its GGUF header.`);
  return new SamplerRows(loaded, context, V);
}
