import { SAMPLING_DEFAULTS, type SamplingOptions } from "../llama/generate.js";

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

/** mulberry32: a small, fast 32-bit generator; the same seed gives the same draws. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 0x1_0000_0000;
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
    const penalised = this.penalties(logits, recent, offset, vocab);
    const at = (i: number) => penalised?.get(i) ?? logits[offset + i]!;
    if (s.temperature <= 0) {
      if (!penalised) return argmax(logits, offset, vocab);
      let best = 0;
      for (let i = 1; i < vocab; i++) if (at(i) > at(best)) best = i;
      return best;
    }
    let ids = topK(at, vocab, s.topK);
    let values = ids.map(at);
    ({ ids, values } = topP(ids, values, s.topP));
    ({ ids, values } = minP(ids, values, s.minP));
    return ids[draw(values.map((v) => v / s.temperature), this.random())]!;
  }

  /** The penalised logits of the recent tokens, or undefined when the penalty is off or nothing repeats. */
  private penalties(logits: Float32Array, recent: readonly number[], offset: number, vocab: number): Map<number, number> | undefined {
    const penalty = this.settings.repeatPenalty;
    if (penalty === 1 || recent.length === 0) return undefined;
    const out = new Map<number, number>();
    for (const t of recent.slice(-REPEAT_PENALTY_LAST_TOKENS)) {
      if (t < 0 || t >= vocab || this.spared.has(t) || out.has(t)) continue;
      const v = logits[offset + t]!;
      out.set(t, v <= 0 ? v * penalty : v / penalty);
    }
    return out.size > 0 ? out : undefined;
  }
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
  const max = Math.max(...values);
  const exps = values.map((v) => Math.exp(v - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / sum);
}

/** Sorted candidates (largest first) cut at cumulative probability p. */
export function topP(ids: number[], values: number[], p: number): { ids: number[]; values: number[] } {
  if (p >= 1 || ids.length <= 1) return { ids, values };
  const probs = softmax(values);
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

/** The index drawn from softmax(logits) with a uniform `u` in [0, 1). */
export function draw(logits: readonly number[], u: number): number {
  const probs = softmax(logits);
  let cum = 0;
  for (let i = 0; i < probs.length; i++) {
    cum += probs[i]!;
    if (u < cum) return i;
  }
  return probs.length - 1;
}
