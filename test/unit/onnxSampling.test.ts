import { describe, expect, it } from "vitest";
import { REPEAT_PENALTY_LAST_TOKENS, Sampler, candidates, minP, resolveSampling, topK, topP } from "../../src/backends/onnx/sampling.js";

const logits = (xs: number[]) => Float32Array.from(xs);

/** How often each token is drawn in `n` samples. */
function counts(sampler: Sampler, row: Float32Array, n: number, recent: number[] = []): number[] {
  const c = new Array<number>(row.length).fill(0);
  for (let i = 0; i < n; i++) c[sampler.sample(row, recent)]!++;
  return c;
}

const all = { topK: 0, topP: 1, minP: 0 };

describe("ONNX sampling with llama.cpp's meaning", () => {
  it("temperature 0 is greedy: the largest logit, the first of equal ones, whatever the other settings", () => {
    const s = new Sampler(resolveSampling({ temperature: 0, topK: 1, topP: 0.1, seed: 1 }));
    expect(s.sample(logits([0.1, 3, 2, 3]), [])).toBe(1);
    expect(s.sample(logits([-5, -1, -2]), [])).toBe(1);
  });

  it("reads one position's row from an offset into a [rows × vocab] buffer", () => {
    const s = new Sampler(resolveSampling({ temperature: 0 }));
    expect(s.sample(logits([9, 0, 0, 0, 1, 5]), [], 3, 3)).toBe(2);
  });

  it("the defaults are llama.cpp's (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05; no repeat penalty)", () => {
    const r = resolveSampling({ seed: 3 });
    expect(r).toEqual({ temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1, seed: 3 });
  });

  it("the same seed draws the same tokens; another seed draws others", () => {
    const row = logits(Array.from({ length: 50 }, (_, i) => Math.sin(i)));
    const run = (seed: number) => {
      const s = new Sampler(resolveSampling({ temperature: 1, ...all, seed }));
      return Array.from({ length: 40 }, () => s.sample(row, []));
    };
    expect(run(7)).toEqual(run(7));
    expect(run(7)).not.toEqual(run(8));
  });

  it("without cuts, tokens are drawn in proportion to softmax(logits / temperature)", () => {
    const row = logits([Math.log(0.5), Math.log(0.3), Math.log(0.2)]);
    const n = 20000;
    const c = counts(new Sampler(resolveSampling({ temperature: 1, ...all, seed: 11 })), row, n);
    expect(c[0]! / n).toBeCloseTo(0.5, 1);
    expect(c[1]! / n).toBeCloseTo(0.3, 1);
    expect(c[2]! / n).toBeCloseTo(0.2, 1);
    // Temperature 0.5 squares the odds: 0.25 : 0.09 : 0.04.
    const hot = counts(new Sampler(resolveSampling({ temperature: 0.5, ...all, seed: 12 })), row, n);
    expect(hot[0]! / n).toBeCloseTo(0.25 / 0.38, 1);
  });

  it("top-k keeps the k most likely tokens", () => {
    const row = logits([1, 4, 3, 2, 0]);
    const c = counts(new Sampler(resolveSampling({ temperature: 5, topK: 2, topP: 1, minP: 0, seed: 5 })), row, 2000);
    expect(c[1]! > 0 && c[2]! > 0).toBe(true);
    expect(c[0]! + c[3]! + c[4]!).toBe(0);
  });

  it("top-p keeps the most likely tokens until their probabilities reach p, the crossing one included", () => {
    const row = logits([Math.log(0.5), Math.log(0.3), Math.log(0.15), Math.log(0.05)]);
    const c = counts(new Sampler(resolveSampling({ temperature: 1, topK: 0, topP: 0.7, minP: 0, seed: 9 })), row, 4000);
    // 0.5 < 0.7 ≤ 0.8: the first two stay.
    expect(c[0]! > 0 && c[1]! > 0).toBe(true);
    expect(c[2]! + c[3]!).toBe(0);
    const exact = counts(new Sampler(resolveSampling({ temperature: 1, topK: 0, topP: 0.5, minP: 0, seed: 9 })), row, 2000);
    expect(exact[0]).toBe(2000);
  });

  it("min-p keeps tokens at least p times as likely as the top one", () => {
    const row = logits([Math.log(0.6), Math.log(0.3), Math.log(0.07), Math.log(0.03)]);
    const c = counts(new Sampler(resolveSampling({ temperature: 1, topK: 0, topP: 1, minP: 0.1, seed: 4 })), row, 4000);
    // 0.07 ≥ 0.1 × 0.6 stays; 0.03 does not.
    expect(c[2]! > 0).toBe(true);
    expect(c[3]).toBe(0);
  });

  it("the repeat penalty divides positive logits and multiplies negative ones of recent tokens", () => {
    const greedy = (penalty: number, recent: number[], spared?: Set<number>) => new Sampler(resolveSampling({ temperature: 0, repeatPenalty: penalty }), spared).sample(logits([2, 1.5, -0.1, -0.2]), recent);
    expect(greedy(1, [0])).toBe(0);
    expect(greedy(1.5, [0])).toBe(1); // 2 / 1.5 < 1.5
    expect(greedy(1.5, [0, 0, 0, 1])).toBe(0); // both penalised once: 1.33 > 1
    // Negative logits: -0.1 × 30 = -3 falls below -0.2.
    expect(new Sampler(resolveSampling({ temperature: 0, repeatPenalty: 30 })).sample(logits([-1, -1, -0.1, -0.2]), [2])).toBe(3);
    // The spared (newline) token is never penalised.
    expect(greedy(1.5, [0], new Set([0]))).toBe(0);
  });

  it(`the repeat penalty looks at the last ${REPEAT_PENALTY_LAST_TOKENS} generated tokens only`, () => {
    const s = new Sampler(resolveSampling({ temperature: 0, repeatPenalty: 2 }));
    const filler = new Array<number>(REPEAT_PENALTY_LAST_TOKENS).fill(3);
    expect(s.sample(logits([2, 1.5, 0, 0]), [0, ...filler])).toBe(0);
    expect(s.sample(logits([2, 1.5, 0, 0]), [...filler.slice(1), 0])).toBe(1);
  });

  it("top-k selection equals a full sort's first k", () => {
    const values = Array.from({ length: 500 }, (_, i) => Math.sin(i * 12.9898) * 43758.5453 - Math.floor(Math.sin(i * 12.9898) * 43758.5453));
    const at = (i: number) => values[i]!;
    const sorted = values.map((_, i) => i).sort((a, b) => values[b]! - values[a]!);
    expect(topK(at, values.length, 40)).toEqual(sorted.slice(0, 40));
    expect(topK(at, values.length, 0)).toEqual(sorted);
  });

  it("without top-k, the candidates kept equal top-p and min-p over the whole sorted vocabulary (the fast path cuts nothing it should keep)", () => {
    const vocab = 5000;
    const rows = [
      Float32Array.from({ length: vocab }, (_, i) => -Math.log(1 + i) * 2 + Math.sin(i) * 0.5), // peaked, like a language model
      Float32Array.from({ length: vocab }, (_, i) => Math.sin(i * 1.37) * 5), // flat
    ];
    for (const row of rows) {
      const sorted = Array.from({ length: vocab }, (_, i) => i).sort((a, b) => row[b]! - row[a]! || a - b);
      const max = row[sorted[0]!]!;
      const norm = sorted.reduce((acc, i) => acc + Math.exp(row[i]! - max), 0);
      for (const p of [0.3, 0.9, 0.99, 1]) {
        for (const mp of [0, 0.05]) {
          // By the definition: the shortest sorted prefix reaching p, then min-p on it.
          let cum = 0;
          let cut = sorted.length;
          if (p < 1) cut = sorted.findIndex((i) => (cum += Math.exp(row[i]! - max) / norm) >= p) + 1;
          const expected = sorted.slice(0, cut).filter((i) => mp <= 0 || row[i]! >= max + Math.log(mp));
          const c = candidates(row, 0, p, mp);
          const afterP = topP(c.ids, c.values, p, c.logNorm);
          const got = minP(afterP.ids, afterP.values, mp).ids;
          expect(mp <= 0 && p >= 1 ? [...got].sort((a, b) => a - b) : got).toEqual(mp <= 0 && p >= 1 ? [...expected].sort((a, b) => a - b) : expected);
        }
      }
    }
  });
});
