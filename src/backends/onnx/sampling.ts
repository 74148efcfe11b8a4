import { SAMPLING_DEFAULTS, type SamplingOptions } from "../llama/generate.js";
import { seededRandom } from "../../core/random.js";

/**
 * Token sampling with llama.cpp's meaning, so that slm's flags do the same on both runtimes. The chain is
 * the one node-llama-cpp builds (llama/addon/AddonSampler.cpp in node-llama-cpp 3.21.1): repeat penalty,
 * then greedy argmax when temperature ≤ 0, else top-k → top-p → min-p → temperature → a draw from the
 * softmax. Each step below follows the llama.cpp sampler of the same name (src/llama-sampling.cpp):
 * - repeat penalty: each distinct token among the recent ones has its logit divided by the penalty when
 *   positive, multiplied when negative (llama_sampler_penalties with frequency and presence 0);
 * - top-k ≤ 0 keeps the whole vocabulary;
 * - top-p keeps the most likely tokens until their probabilities sum to ≥ p (p ≥ 1: no cut);
 * - min-p keeps tokens whose logit is ≥ max logit + ln(p), i.e. probability ≥ p × the top one's;
 * - at least one token is always kept.
 * Sampled outputs need not equal llama.cpp's (its random generator differs); greedy ones do.
 */
export interface ResolvedSampling {
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  /** 1 = off. */
  repeatPenalty: number;
  seed: number;
}

/** How many of the latest generated tokens the repeat penalty looks at (node-llama-cpp's default). */
export const REPEAT_PENALTY_LAST_TOKENS = 64;

export function resolveSampling(o: SamplingOptions): ResolvedSampling {
  return {
    temperature: o.temperature ?? SAMPLING_DEFAULTS.temperature,
    topK: o.topK ?? SAMPLING_DEFAULTS.topK,
    topP: o.topP ?? SAMPLING_DEFAULTS.topP,
    minP: o.minP ?? SAMPLING_DEFAULTS.minP,
    repeatPenalty: o.repeatPenalty ?? 1,
    // Without a seed each generation draws differently, like node-llama-cpp's time-seeded default.
    seed: o.seed ?? Math.floor(Math.random() * 0x1_0000_0000),
  };
}


/** Index of the largest value; the first of equal ones, as llama.cpp's greedy sampler picks. */
export function argmax(values: ArrayLike<number>, offset = 0, length = values.length - offset): number {
  let best = 0;
  let bestValue = values[offset]!;
  for (let i = 1; i < length; i++) {
    const v = values[offset + i]!;
    if (v > bestValue) {
      bestValue = v;
      best = i;
    }
  }
  return best;
}

export class Sampler {
  private readonly random: () => number;

  constructor(
    readonly settings: ResolvedSampling,
    /** Tokens the repeat penalty never punishes (node-llama-cpp spares the newline token). */
    private readonly spared: ReadonlySet<number> = new Set(),
  ) {
    this.random = seededRandom(settings.seed);
  }

  /**
   * The next token from one position's logits (`vocab` values from `offset`); `recent` are the tokens
   * generated so far. The logits are not modified.
   */
  sample(logits: Float32Array, recent: readonly number[], offset = 0, vocab = logits.length - offset): number {
    const s = this.settings;
    const row = this.penalised(logits.subarray(offset, offset + vocab), recent);
    if (s.temperature <= 0) return argmax(row);
    let { ids, values, logNorm } = candidates(row, s.topK, s.topP, s.minP);
    ({ ids, values } = topP(ids, values, s.topP, logNorm));
    ({ ids, values } = minP(ids, values, s.minP));
    return ids[draw(values, this.random(), s.temperature)]!;
  }

  /** The row with the repeat penalty applied (a copy), or the row itself when the penalty is off. */
  private penalised(row: Float32Array, recent: readonly number[]): Float32Array {
    const penalty = this.settings.repeatPenalty;
    if (penalty === 1 || recent.length === 0) return row;
    const out = Float32Array.from(row);
    const done = new Set<number>();
    for (const t of recent.slice(-REPEAT_PENALTY_LAST_TOKENS)) {
      if (t < 0 || t >= row.length || this.spared.has(t) || done.has(t)) continue;
      done.add(t);
      const v = row[t]!;
      out[t] = v <= 0 ? v * penalty : v / penalty;
    }
    return out;
  }
}

/**
 * The candidates top-k leaves, largest first. Without a top-k cut (k ≤ 0, or k ≥ the vocabulary) a whole
 * sorted vocabulary would cost ~90 ms a token at 49k tokens, so only what top-p can keep is sorted: the
 * tokens of probability ≥ a floor at which those already reach p, with
 * `logNorm` (the log-sum-exp over the whole vocabulary) so top-p still normalises over all of it. With no
 * top-p cut either, min-p (which does not depend on order) is the only cut: what it keeps, sorted, or with
 * min-p off every token, in vocabulary order (nothing after needs them sorted).
 */
export function candidates(row: Float32Array, k: number, p: number, minP = 0): { ids: number[]; values: number[]; logNorm?: number } {
  const vocab = row.length;
  const n = k <= 0 ? vocab : Math.min(k, vocab);
  if (n < vocab) {
    const ids = n <= 256 ? topK((i) => row[i]!, vocab, n) : sortedIds(row, Array.from({ length: vocab }, (_, i) => i)).slice(0, n);
    return { ids, values: ids.map((i) => row[i]!) };
  }
  const max = row[argmax(row)]!;
  let sum = 0;
  for (let i = 0; i < vocab; i++) sum += Math.exp(row[i]! - max);
  const logNorm = max + Math.log(sum);
  if (p >= 1) {
    // Only min-p can cut now, and it does not depend on order: keep what it keeps, sorted; or everything.
    const floor = minP > 0 ? max + Math.log(minP) : Number.NEGATIVE_INFINITY;
    const kept: number[] = [];
    for (let i = 0; i < vocab; i++) if (row[i]! >= floor) kept.push(i);
    const ids = minP > 0 ? sortedIds(row, kept) : kept;
    return { ids, values: ids.map((i) => row[i]!), logNorm };
  }
  // Lower a probability floor tenfold until the tokens at or above it hold p: top-p's sorted prefix then
  // lies among them, and only they are sorted (one to a few passes over the vocabulary).
  const probs = new Float64Array(vocab);
  for (let i = 0; i < vocab; i++) probs[i] = Math.exp(row[i]! - logNorm);
  let floor = Math.exp(max - logNorm) / 10;
  for (;;) {
    let held = 0;
    for (let i = 0; i < vocab; i++) if (probs[i]! >= floor) held += probs[i]!;
    if (held >= p || floor < 1e-300) break;
    floor /= 10;
  }
  const kept: number[] = [];
  for (let i = 0; i < vocab; i++) if (probs[i]! >= floor || floor < 1e-300) kept.push(i);
  const ids = sortedIds(row, kept);
  return { ids, values: ids.map((i) => row[i]!), logNorm };
}

/** `ids` sorted by their value, largest first (equal values: lower id first). */
function sortedIds(row: Float32Array, ids: number[]): number[] {
  return ids.sort((a, b) => row[b]! - row[a]! || a - b);
}

/** The ids of the k largest values, largest first (k ≤ 0: all of them, sorted). */
export function topK(at: (i: number) => number, vocab: number, k: number): number[] {
  const n = k <= 0 ? vocab : Math.min(k, vocab);
  if (n === vocab) {
    const all = Array.from({ length: vocab }, (_, i) => i);
    return all.sort((a, b) => at(b) - at(a) || a - b);
  }
  // A bounded selection: keep the n best seen so far, sorted descending (n is small: 40 by default).
  const best: number[] = [];
  for (let i = 0; i < vocab; i++) {
    const v = at(i);
    if (best.length === n && v <= at(best[n - 1]!)) continue;
    let j = best.length < n ? best.length : n - 1;
    while (j > 0 && at(best[j - 1]!) < v) {
      if (j < n) best[j] = best[j - 1]!;
      j--;
    }
    best[j] = i;
  }
  return best;
}

function softmax(values: readonly number[]): number[] {
  // A loop, not Math.max(...values): a whole vocabulary is too many arguments for a call.
  let max = Number.NEGATIVE_INFINITY;
  for (const v of values) if (v > max) max = v;
  const exps = values.map((v) => Math.exp(v - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / sum);
}

/**
 * Sorted candidates (largest first) cut at cumulative probability p; `logNorm` normalises over a larger set
 * the candidates were taken from (candidates()), else over the candidates themselves.
 */
export function topP(ids: number[], values: number[], p: number, logNorm?: number): { ids: number[]; values: number[] } {
  if (p >= 1 || ids.length <= 1) return { ids, values };
  const probs = logNorm === undefined ? softmax(values) : values.map((v) => Math.exp(v - logNorm));
  let cum = 0;
  for (let i = 0; i < probs.length; i++) {
    cum += probs[i]!;
    if (cum >= p) return { ids: ids.slice(0, i + 1), values: values.slice(0, i + 1) };
  }
  return { ids, values };
}

/** Sorted candidates (largest first) with logit ≥ max + ln(p). */
export function minP(ids: number[], values: number[], p: number): { ids: number[]; values: number[] } {
  if (p <= 0 || ids.length <= 1) return { ids, values };
  const floor = values[0]! + Math.log(p);
  let keep = 1;
  while (keep < values.length && values[keep]! >= floor) keep++;
  return { ids: ids.slice(0, keep), values: values.slice(0, keep) };
}

/** The index drawn from softmax(logits / temperature) with a uniform `u` in [0, 1). */
export function draw(logits: readonly number[], u: number, temperature = 1): number {
  // Typed arrays and plain loops: with top-k off this runs over the whole vocabulary every token.
  const n = logits.length;
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < n; i++) if (logits[i]! > max) max = logits[i]!;
  const exps = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += exps[i] = Math.exp((logits[i]! - max) / temperature);
  const target = u * sum;
  let cum = 0;
  for (let i = 0; i < n; i++) {
    cum += exps[i]!;
    if (target < cum) return i;
  }
  return n - 1;
}
