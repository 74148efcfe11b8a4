import { describe, expect, it } from "vitest";
import { rowLogprobs } from "../../src/backends/onnx/logprobs.js";

/** The one-pass top-k and the float64 log-softmax against sorting the whole row and summing naively. */
describe("rowLogprobs", () => {
  it("gives log p of the target and the k most likely tokens, most likely first, lowest id first on ties", () => {
    let x = 12345;
    const rand = () => ((x = (x * 1103515245 + 12345) % 2 ** 31), x / 2 ** 31);
    const row = Float32Array.from({ length: 5000 }, () => Math.round((rand() * 40 - 20) * 4) / 4); // many ties
    const norm = Math.log([...row].reduce((s, v) => s + Math.exp(v), 0));
    const sorted = [...row.keys()].sort((a, b) => row[b]! - row[a]! || a - b);
    for (const k of [0, 1, 5, 20]) {
      const r = rowLogprobs(row, 17, k);
      expect(r.logprob).toBeCloseTo(row[17]! - norm, 9);
      expect(r.top.map((t) => t.token)).toEqual(sorted.slice(0, k));
      r.top.forEach((t) => expect(t.logprob).toBeCloseTo(row[t.token]! - norm, 9));
    }
  });
});
