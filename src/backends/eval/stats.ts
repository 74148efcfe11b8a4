/**
 * The statistics llama-perplexity prints (tools/perplexity/perplexity.cpp in the llama.cpp release
 * node-llama-cpp ships), as pure functions so that slm's figures follow the same formulas and can be
 * checked without a model.
 */

/** Running sums of a quantity and its square, in float64. */
export class Moments {
  count = 0;
  sum = 0;
  sum2 = 0;
  add(v: number): void {
    this.count++;
    this.sum += v;
    this.sum2 += v * v;
  }
  get mean(): number {
    return this.count === 0 ? 0 : this.sum / this.count;
  }
}

/**
 * Perplexity and its ± as llama-perplexity's final estimate: exp(mean NLL), and the standard error
 * of the mean NLL, sqrt((E[x²] − E[x]²) / (n − 1)), times the perplexity (the derivative of exp).
 * The error is 0 where llama-perplexity reports none (a single value, or a negative variance).
 */
export function perplexityEstimate(nll: Moments): { ppl: number; pplError: number } {
  const mean = nll.mean;
  const ppl = Math.exp(mean);
  const variance = nll.count === 0 ? 0 : nll.sum2 / nll.count - mean * mean;
  const sd = variance > 0 && nll.count > 1 ? Math.sqrt(variance / (nll.count - 1)) : 0;
  return { ppl, pplError: sd * ppl };
}

/**
 * llama-perplexity's `mean_and_uncertainty` (used for the KL divergence and the log-perplexities in
 * --kl-divergence mode): the mean and its standard error, the error 0 for 10 values or fewer.
 */
export function meanAndUncertainty(m: Moments): { mean: number; error: number } {
  if (m.count < 1) return { mean: 0, error: 0 };
  const mean = m.sum / m.count;
  const variance = m.sum2 / m.count - mean * mean;
  return { mean, error: variance > 0 && m.count > 10 ? Math.sqrt(variance / (m.count - 1)) : 0 };
}

/** Share of positions and its binomial standard error, as llama-perplexity's "Same top p". */
export function shareWithError(hits: number, count: number): { share: number; error: number } {
  if (count === 0) return { share: 0, error: 0 };
  const share = hits / count;
  return { share, error: count > 1 ? Math.sqrt((share * (1 - share)) / (count - 1)) : 0 };
}

/** Median of sorted values: the mean of the two middle ones for an even count. */
export function medianSorted(sorted: ArrayLike<number>): number {
  const n = sorted.length;
  if (n === 0) return 0;
  return n % 2 === 0 ? 0.5 * (sorted[n / 2]! + sorted[n / 2 - 1]!) : sorted[(n - 1) / 2]!;
}

/** llama-perplexity's percentile: linear interpolation between the two nearest sorted values. */
export function percentileSorted(sorted: ArrayLike<number>, fraction: number): number {
  const n = sorted.length;
  if (n === 0) return 0;
  if (fraction <= 0) return sorted[0]!;
  if (fraction >= 1) return sorted[n - 1]!;
  let p = fraction * (n - 1);
  const ip = Math.floor(p);
  p -= ip;
  return (1 - p) * sorted[ip]! + p * sorted[Math.min(ip + 1, n - 1)]!;
}
