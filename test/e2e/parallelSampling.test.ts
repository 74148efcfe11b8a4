import { describe, expect, it } from "vitest";
import { type BatchPart, DistributionReader } from "../../src/backends/llama/logprobs.js";
import { loadModel } from "../../src/backends/llama/loader.js";
import { resolveModel } from "../../src/backends/store/resolve.js";

const SEQUENCES = 16;
const BATCHES = 1000;

/**
 * After a decode whose micro-batches took the sequences in another order than the batch, llama.cpp
 * puts the output rows back in order on the first read, swapping rows in place; node-llama-cpp reads
 * each row in an async worker on node's libuv pool (vitest's workers keep node's default of 4
 * threads), so two reads at once could hand a sequence another sequence's row: parallel eval
 * questions then got each other's next token. A model loaded by slm reads one row at a time
 * (src/backends/llama/serialSampling.ts), so every read, however many are in flight, must give what
 * reads made one after the other give. Before that, about 1 batch in 100 here mixed rows up.
 */
describe("parallel sequences of one context", () => {
  it("each read their own output row, however many reads run at once", async () => {
    // One thread: vitest runs two files at once on the 2-core machine (see test/helpers/cli.ts).
    const loaded = await loadModel(resolveModel("tiny-arith"), { threads: 1, sequences: SEQUENCES, contextSize: 64 });
    const reader = new DistributionReader(loaded, loaded.context, SEQUENCES);
    try {
      // Sequence 0 comes first with three tokens, every other with one token of its own: llama.cpp
      // computes the others' outputs in the first micro-batch and sequence 0's in the last, so every
      // decode reorders the rows.
      const parts: BatchPart[] = Array.from({ length: SEQUENCES }, (_, s) => {
        const tokens = s === 0 ? Uint32Array.from(loaded.model.tokenize("12+")) : Uint32Array.of(40 + s);
        return { sequence: s, start: 0, tokens, outputs: Uint32Array.of(tokens.length - 1) };
      });
      const decode = async () => {
        reader.clear();
        await reader.decode(parts);
      };
      const copy = async (k: number) => Array.from((await reader.row(k, k)).probs);

      await decode();
      const oneByOne: number[][] = [];
      for (let k = 0; k < SEQUENCES; k++) oneByOne.push(await copy(k));
      // Every sequence's row differs from every other's, so a row read by the wrong sequence shows.
      expect(new Set(oneByOne.map((r) => r.join())).size).toBe(SEQUENCES);

      const mixedUp: number[] = [];
      for (let b = 0; b < BATCHES; b++) {
        await decode();
        const rows = await Promise.all(parts.map((_, k) => copy(k)));
        if (rows.some((r, k) => r.some((p, t) => p !== oneByOne[k]![t]))) mixedUp.push(b);
      }
      expect(mixedUp, "batches where a sequence read another's row").toEqual([]);
    } finally {
      reader.dispose();
      await loaded.dispose();
    }
  }, 120_000);
});
