import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { chunkTokens, planChunks, readEvalText } from "../../src/backends/eval/chunks.js";
import { klDivergenceOfRows } from "../../src/backends/eval/kld.js";
import { type DistributionRow, LN_FLOAT32_MIN, logProbOf } from "../../src/backends/llama/logprobs.js";
import { Moments, meanAndUncertainty, medianSorted, percentileSorted, perplexityEstimate, shareWithError } from "../../src/backends/eval/stats.js";
import { EXIT } from "../../src/core/errors.js";

function moments(xs: number[]): Moments {
  const m = new Moments();
  for (const x of xs) m.add(x);
  return m;
}

/** A row as llama.cpp hands it out: float32 probabilities, their float64 sum's log as the normaliser. */
function row(probs: number[]): DistributionRow {
  const p = Float64Array.from(probs.map((x) => Math.fround(x)));
  let top = 0;
  for (let i = 1; i < p.length; i++) if (p[i]! > p[top]!) top = i;
  return { probs: p, logNorm: Math.log(p.reduce((a, b) => a + b, 0)), top };
}

describe("llama-perplexity's statistics", () => {
  it("perplexity is exp(mean NLL) with the standard error of the mean times the perplexity", () => {
    const nll = [1, 2, 3, 4];
    const { ppl, pplError } = perplexityEstimate(moments(nll));
    expect(ppl).toBeCloseTo(Math.exp(2.5), 12);
    // sample variance of 1..4 with n in the denominator is 1.25; sqrt(1.25 / 3) · e^2.5
    expect(pplError).toBeCloseTo(Math.sqrt(1.25 / 3) * Math.exp(2.5), 12);
    expect(perplexityEstimate(moments([2])).pplError).toBe(0);
  });

  it("mean and uncertainty report no error for 10 values or fewer, as llama-perplexity does", () => {
    expect(meanAndUncertainty(moments([1, 2, 3])).error).toBe(0);
    const xs = Array.from({ length: 11 }, (_, i) => i);
    const r = meanAndUncertainty(moments(xs));
    expect(r.mean).toBe(5);
    expect(r.error).toBeCloseTo(Math.sqrt(10 / 10), 12); // E[x²] − E[x]² = 10 for 0..10
  });

  it("same-top share has a binomial error", () => {
    const r = shareWithError(90, 100);
    expect(r.share).toBe(0.9);
    expect(r.error).toBeCloseTo(Math.sqrt((0.9 * 0.1) / 99), 12);
  });

  it("median and percentiles interpolate like llama-perplexity", () => {
    expect(medianSorted([1, 2, 3, 10])).toBe(2.5);
    expect(medianSorted([1, 2, 3])).toBe(2);
    const xs = Array.from({ length: 101 }, (_, i) => i);
    expect(percentileSorted(xs, 0.99)).toBeCloseTo(99, 12);
    expect(percentileSorted([0, 10], 0.99)).toBeCloseTo(9.9, 12);
    expect(percentileSorted([3, 4], 1)).toBe(4);
  });
});

describe("chunks like llama-perplexity", () => {
  it("cuts floor(n / ctx) chunks and scores ctx − 1 − ctx/2 tokens of each", () => {
    const p = planChunks(1000, 128);
    expect(p).toMatchObject({ chunks: 7, first: 64, scoredPerChunk: 63, piece: 128, parallel: 4 });
    expect(planChunks(5000, 1024)).toMatchObject({ piece: 512, parallel: 1 });
    // Never more chunks at once than there are.
    expect(planChunks(300, 128).parallel).toBe(2);
  });

  it("refuses a text shorter than two chunks, naming both figures", () => {
    expect(() => planChunks(255, 128)).toThrow(/255 tokens and needs at least 256/);
    try {
      planChunks(10, 128);
    } catch (err) {
      expect((err as { exitCode: number }).exitCode).toBe(EXIT.usage);
    }
  });

  it("puts BOS in place of each chunk's first token, leaving the text alone", () => {
    const all = Uint32Array.from({ length: 20 }, (_, i) => 100 + i);
    const plan = planChunks(all.length, 8);
    expect(Array.from(chunkTokens(all, plan, 1, 1))).toEqual([1, 109, 110, 111, 112, 113, 114, 115]);
    expect(Array.from(chunkTokens(all, plan, 1, undefined))).toEqual([108, 109, 110, 111, 112, 113, 114, 115]);
    expect(all[8]).toBe(108);
  });

  it("reads the text as llama-perplexity's -f: one trailing newline dropped", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "slm-ppl-"));
    const f = path.join(dir, "t.txt");
    writeFileSync(f, "a\nb\n\n");
    expect(readEvalText(f)).toBe("a\nb\n");
    writeFileSync(f, "\n");
    expect(() => readEvalText(f)).toThrow(/empty/);
    expect(() => readEvalText(path.join(dir, "missing.txt"))).toThrow(/not found/);
  });
});

describe("exact distributions", () => {
  it("renormalises float32 probabilities in float64", () => {
    const r = row([0.5, 0.25, 0.25000003]);
    const s = 0.5 + 0.25 + Math.fround(0.25000003);
    expect(logProbOf(r, 0)).toBeCloseTo(Math.log(0.5 / s), 15);
  });

  it("clamps an underflowed probability to 2^-149 instead of −Infinity", () => {
    const r = row([1, 0]);
    expect(logProbOf(r, 1)).toBe(LN_FLOAT32_MIN);
    expect(Number.isFinite(klDivergenceOfRows(row([0.5, 0.5]), r))).toBe(true);
  });

  it("KL divergence over the whole vocabulary matches the textbook sum", () => {
    const pb = [0.7, 0.2, 0.05, 0.05];
    const q = [0.6, 0.3, 0.09, 0.01];
    const expected = pb.reduce((s, p, i) => s + p * Math.log(p / q[i]!), 0);
    expect(klDivergenceOfRows(row(pb), row(q))).toBeCloseTo(expected, 7);
    expect(klDivergenceOfRows(row(pb), row(pb))).toBe(0);
    // Tokens the base never predicts contribute nothing, whatever the model says.
    expect(klDivergenceOfRows(row([1, 0]), row([0.5, 0.5]))).toBeCloseTo(Math.log(2), 7);
  });
});
