import type { Token } from "node-llama-cpp";
import { describe, expect, it } from "vitest";
import { continuationLogLikelihoods } from "../../src/backends/llama/likelihood.js";
import { loadModel } from "../../src/backends/llama/loader.js";
import { logitRowsFor, type RowLogprobs } from "../../src/backends/llama/rows.js";
import { tapSamples } from "../../src/backends/llama/serialSampling.js";
import { resolveModel } from "../../src/backends/store/resolve.js";

/**
 * The sampling tap reports each sampled token with the output row it came from while that row is
 * still valid, also when two sequences share every decode: the log-probability read there for the
 * sampled token must be what scoring the same tokens afresh gives (node-llama-cpp's own full
 * distribution, likelihood.ts), for each sequence — a row read after the next decode, or another
 * sequence's row, would not be.
 */
describe("tapSamples + logitRowsFor", () => {
  it("read each generated token's log-probability from its own row, two sequences at once", async () => {
    const loaded = await loadModel(resolveModel("tiny-arith"), { threads: 1, sequences: 2, contextSize: 128 });
    const rows = logitRowsFor(loaded);
    const prompts = ["12+34=", "5+61="].map((p) => loaded.model.tokenize(p));
    const sequences = prompts.map(() => loaded.context.getSequence());
    try {
      const runs = await Promise.all(
        sequences.map(async (sequence, s) => {
          const seen: { position: number; token: number; read: RowLogprobs }[] = [];
          const stop = tapSamples(loaded.context, (sequence as unknown as { _sequenceId: number })._sequenceId, async (row) => {
            seen.push({ position: row.position, token: row.token, read: await rows.read(row.batchIndex, row.token, 3) });
          });
          const generated: Token[] = [];
          try {
            // Sampling at temperature 1 picks tokens that are not always the most likely.
            for await (const t of sequence.evaluate(prompts[s]!, { temperature: 1, seed: 7 + s })) {
              generated.push(t);
              if (generated.length === 6) break;
            }
          } finally {
            stop();
          }
          return { generated, seen };
        }),
      );
      for (const [s, { generated, seen }] of runs.entries()) {
        expect(seen.map((x) => x.token).slice(0, generated.length)).toEqual(generated);
        expect(seen[0]!.position).toBe(prompts[s]!.length - 1);
        seen.slice(1).forEach((x, i) => expect(x.position).toBe(seen[i]!.position + 1));
        // Scored afresh, one prefix at a time, on a clean sequence.
        const check = sequences[s]!;
        await check.clearHistory();
        for (let i = 0; i < generated.length; i++) {
          const [expected] = await continuationLogLikelihoods(check, [...prompts[s]!, ...generated.slice(0, i)], [[generated[i]!]]);
          // Not bit-equal: llama.cpp's numbers move a little with the batch's shape (two sequences or one).
          expect(seen[i]!.read.logprob).toBeCloseTo(expected!, 4);
          const top = seen[i]!.read.top;
          expect(top).toHaveLength(3);
          expect(top[0]!.logprob).toBeGreaterThanOrEqual(top[1]!.logprob);
          expect(top[0]!.logprob).toBeGreaterThanOrEqual(seen[i]!.read.logprob);
        }
      }
    } finally {
      rows.dispose();
      for (const s of sequences) s.dispose();
      await loaded.dispose();
    }
  }, 60_000);
});
