import type { LlamaContext, LlamaContextSequence } from "node-llama-cpp";
import { SlmError } from "../../core/errors.js";
import type { LoadedModel } from "./loader.js";
import type { NativeLogitsAddon } from "./native/addon.js";
import { bindContext, nativeRowsAddon } from "./native/probe.js";
import { serializeSampling } from "./serialSampling.js";

/**
 * Exact full-vocabulary next-token distributions from node-llama-cpp 3.21.1, for every position of a
 * batch that asks for one (not only the last), without top-k truncation.
 *
 * node-llama-cpp has no call that hands out raw logits. What it has is the sampler's probability
 * output: `sampleToken(batchLogitIndex, sampler, probabilities = true)` copies the logits of one
 * output row of the last llama_decode, runs the sampler chain, and returns every candidate with
 * softmax(logits) computed natively. With temperature 0 the chain is the greedy sampler alone, which
 * only picks the arg-max and drops nothing, so all `n_vocab` tokens come back (measured: the row
 * always holds exactly the vocabulary size). The public API reaches the same native call through
 * `LlamaContextSequence.controlledEvaluate(…, {generateNext: {probabilities: true}})`, but turns each
 * row into a `Map` of n_vocab entries and couples decoding with sampling; measured on a
 * SmolLM2-135M-shaped model (49,152 tokens) that cost about twice the native call itself, which is
 * already ~23 ms per row, mostly spent building the JavaScript array (docs/benchmarks.md,
 * "Perplexity"). So this module drives the context's native binding directly, the way `slm bench`
 * does (src/backends/llama/bench.ts): one llama_decode per batch with outputs exactly where the caller
 * wants them, then one native call per output row.
 * These members are internal, so they are checked at run time; node-llama-cpp is pinned exactly.
 *
 * Precision: the native softmax is float32 (expf of logit − max, summed in float32, divided). Every
 * row is renormalised here in float64, so the float32 sum's rounding drops out and a log-probability
 * is exact to about 1e-7 (one float32 rounding of expf and of the division) down to probabilities of
 * ~1e-38 (87 nats under the row's maximum), where float32 turns subnormal and loses digits. A
 * probability below float32's smallest value (~103 nats under the maximum) comes back as 0; its
 * log-probability is then taken as ln(2^-149) ≈ −103.3, an upper bound (see `logProbOf`).
 */

/** ln of float32's smallest positive (subnormal) value, 2^-149. */
export const LN_FLOAT32_MIN = -149 * Math.LN2;

/** One position's next-token distribution. Buffers are reused between rows: copy what must outlive them. */
export interface DistributionRow {
  /** Probability of each token id as llama.cpp returned it (float32 values), not yet renormalised. */
  probs: Float64Array;
  /** ln Σ probs (≈ 0, within float32 rounding); subtracted to renormalise in float64. */
  logNorm: number;
  /** Arg-max token: the lowest id among equal maxima, as llama-perplexity picks it. */
  top: number;
}

/** ln p(token) of a row, renormalised, with underflowed probabilities clamped to 2^-149. */
export function logProbOf(row: DistributionRow, token: number): number {
  const p = row.probs[token]!;
  return (p > 0 ? Math.log(p) : LN_FLOAT32_MIN) - row.logNorm;
}

/**
 * `row` filled from a greedy sampler's output: `flat` is [token, p, token, p, …] for the whole vocabulary,
 * sorted by logit, largest first.
 */
export function fillRow(row: DistributionRow, flat: readonly number[] | undefined, vocabSize: number): DistributionRow {
  if (!flat || flat.length !== 2 * vocabSize) {
    throw new SlmError(`llama.cpp returned ${flat ? flat.length / 2 : 0} of ${vocabSize} token probabilities: evaluation needs the full vocabulary.`);
  }
  const probs = row.probs;
  let sum = 0;
  // Among equal largest logits llama-perplexity's arg-max is the lowest token id.
  let top = flat[0]!;
  const pTop = flat[1]!;
  for (let i = 0; i < flat.length; i += 2) {
    const t = flat[i]!;
    const p = flat[i + 1]!;
    probs[t] = p;
    sum += p;
    if (p === pTop && t < top) top = t;
  }
  row.logNorm = Math.log(sum);
  row.top = top;
  return row;
}

/** The native binding members used here (AddonContext and AddonSampler in node-llama-cpp's addon). */
interface AddonContextBinding {
  initBatch(size: number): void;
  addToBatch(sequenceId: number, firstTokenIndex: number, tokens: Uint32Array, logitIndexes: Uint32Array): Uint32Array;
  decodeBatch(): Promise<void>;
  disposeSequence(sequenceId: number): void;
  sampleToken(batchLogitIndex: number, sampler: AddonSampler, probabilities: boolean): Promise<[number, number[] | undefined, unknown]>;
}
export interface AddonSampler {
  applyConfig(config: { temperature: number }): void;
  dispose(): void;
}

const PINNED = {
  hint: "Reinstall slm's dependencies (npm ci) so that node-llama-cpp is the pinned version.",
} as const;

/**
 * A native sampler of `loaded`'s model set to greedy: its chain then keeps every candidate (no
 * top-k/top-p/min-p), so sampleToken(…, probabilities) hands back the whole vocabulary (module comment).
 */
export function greedySampler(loaded: LoadedModel): AddonSampler {
  const Sampler = (loaded.llama as unknown as { _bindings?: { AddonSampler?: unknown } })._bindings?.AddonSampler;
  const model = (loaded.model as unknown as { _model?: unknown })._model;
  if (typeof Sampler !== "function" || model === undefined) {
    throw new SlmError("This node-llama-cpp build does not expose the native sampler slm reads log-probabilities with (it expects node-llama-cpp 3.21.1 exactly).", PINNED);
  }
  const s = new (Sampler as new (model: unknown) => AddonSampler)(model);
  s.applyConfig({ temperature: 0 });
  return s;
}

function binding(context: LlamaContext, sequences: LlamaContextSequence[]): { addon: AddonContextBinding; sequenceIds: number[] } {
  const addon = (context as unknown as { _ctx?: Partial<AddonContextBinding> })._ctx;
  const sequenceIds = sequences.map((s) => (s as unknown as { _sequenceId?: unknown })._sequenceId);
  const methods = ["initBatch", "addToBatch", "decodeBatch", "disposeSequence", "sampleToken"] as const;
  if (!addon || sequenceIds.some((id) => typeof id !== "number") || methods.some((m) => typeof addon[m] !== "function")) {
    throw new SlmError("This node-llama-cpp build does not expose the native calls slm's evaluation needs (it expects node-llama-cpp 3.21.1 exactly).", PINNED);
  }
  return { addon: addon as AddonContextBinding, sequenceIds: sequenceIds as number[] };
}

/** Tokens of one sequence in a batch, and which of them need an output row (indexes into `tokens`, ascending). */
export interface BatchPart {
  sequence: number;
  start: number;
  tokens: Uint32Array;
  outputs: Uint32Array;
}

/**
 * All sequences of a loaded model's context, for scoring. `slots` rows can be fetched at the same
 * time (one sampler and one row buffer each), so that llama.cpp's worker sorts one row while
 * JavaScript reads another.
 */
export class DistributionReader {
  readonly vocabSize: number;
  private readonly sequences: LlamaContextSequence[];
  private readonly addon: AddonContextBinding;
  private readonly sequenceIds: number[];
  private readonly samplers: AddonSampler[];
  private readonly rows: DistributionRow[];
  private indexes: number[] = [];
  /** slm's addon and node-llama-cpp's AddonContext it reads, when the model passed the addon's probe (native/probe.ts). */
  native?: { addon: NativeLogitsAddon; handle: object };
  /** Most tokens one decode takes. */
  readonly batchSize: number;

  /** Reads `context` (the loaded model's own, or another context of the same model). */
  constructor(loaded: LoadedModel, context: LlamaContext = loaded.context, slots = 2) {
    const V = loaded.summary.vocabSize;
    if (!V) throw new SlmError(`${loaded.entry.name} does not state its vocabulary size in its GGUF header.`);
    this.vocabSize = V;
    this.batchSize = context.batchSize;
    this.sequences = Array.from({ length: context.totalSequences }, () => context.getSequence());
    const b = binding(context, this.sequences);
    this.addon = b.addon;
    this.sequenceIds = b.sequenceIds;
    this.samplers = Array.from({ length: slots }, () => greedySampler(loaded));
    this.rows = Array.from({ length: slots }, () => ({ probs: new Float64Array(V), logNorm: 0, top: 0 }));
  }

  get slots(): number {
    return this.samplers.length;
  }

  /** Sequences of the context: chunks that can be decoded together. */
  get parallel(): number {
    return this.sequences.length;
  }

  /** Empties every sequence's KV cache (each chunk starts from nothing, as in llama-perplexity). */
  clear(): void {
    for (const id of this.sequenceIds) this.addon.disposeSequence(id);
  }

  /**
   * One llama_decode of all `parts` together. Output rows are numbered in the order of the parts and
   * of their `outputs`; rows of the previous decode are invalid afterwards.
   */
  async decode(parts: BatchPart[]): Promise<void> {
    this.addon.initBatch(parts.reduce((n, p) => n + p.tokens.length, 0));
    this.indexes = [];
    for (const p of parts) this.indexes.push(...this.addon.addToBatch(this.sequenceIds[p.sequence]!, p.start, p.tokens, p.outputs));
    await this.addon.decodeBatch();
  }

  /** The distribution of output `k` of the last decode, in the buffer of `slot` (reused by the next call with that slot). */
  async row(k: number, slot: number): Promise<DistributionRow> {
    const index = this.indexes[k];
    if (index === undefined) throw new RangeError(`No output ${k} in the last batch.`);
    const [, flat] = await this.addon.sampleToken(index, this.samplers[slot]!, true);
    return fillRow(this.rows[slot]!, flat, this.vocabSize);
  }

  /** The context's output row of each output of the last decode, in order. */
  outputIndexes(): Int32Array {
    return Int32Array.from(this.indexes);
  }

  dispose(): void {
    for (const s of this.samplers) s.dispose();
    for (const s of this.sequences) s.dispose();
  }
}

/**
 * `count` readers of one loaded model, each on its own context: the model's own, then new contexts
 * with the same settings (size, sequences, batch, threads, adapters) on the same weights.
 */
export async function openReaders(loaded: LoadedModel, count: number): Promise<{ readers: DistributionReader[]; dispose: () => Promise<void> }> {
  const contexts: LlamaContext[] = [];
  const readers: DistributionReader[] = [];
  const dispose = async () => {
    for (const r of readers) r.dispose();
    for (const c of contexts) await c.dispose();
  };
  try {
    readers.push(new DistributionReader(loaded));
    for (let i = 1; i < count; i++) {
      const c = await loaded.model.createContext({
        contextSize: loaded.context.contextSize,
        sequences: loaded.context.totalSequences,
        batchSize: loaded.context.batchSize,
        threads: { ideal: loaded.settings.threads, min: loaded.settings.threads },
        lora: loaded.adapters.length > 0 ? { adapters: loaded.adapters.map((a) => ({ filePath: a.path, scale: a.scale })) } : undefined,
      });
      contexts.push(c);
      serializeSampling(c);
      readers.push(new DistributionReader(loaded, c));
    }
  } catch (err) {
    await dispose();
    throw err;
  }
  const addon = nativeRowsAddon(loaded.model);
  if (addon) {
    const handles = [loaded.context, ...contexts].map((c) => bindContext(addon, loaded.model, c));
    // All or none: a context the addon cannot vouch for leaves the model on the exact slow path.
    if (handles.every((h) => h !== undefined)) readers.forEach((r, i) => (r.native = { addon, handle: handles[i]! }));
  }
  return { readers, dispose };
}

/**
 * Runs `fn` for 0 … count−1 with up to `slots` calls in flight, each with its own slot number, so
 * native sampling of one row overlaps with JavaScript work on another. Order of completion is free.
 */
export async function forEachRow(count: number, slots: number, fn: (k: number, slot: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(slots, count) }, async (_, slot) => {
      while (next < count) await fn(next++, slot);
    }),
  );
}
