import { emit, type BackendContext } from "../../core/events.js";
import { CancelledError } from "../../core/errors.js";
import { type ChunkPlan, chunkTokens } from "./chunks.js";
import { type DistributionReader, type DistributionRow, forEachRow } from "./logprobs.js";

/** One scored position: the distributions of every reader there, and the token that follows. */
export type PositionScorer = (rows: DistributionRow[], target: number, index: number) => void;

/**
 * Walks the chunks of `plan` the way llama-perplexity does, with every reader in lock-step: per
 * chunk, an empty KV cache; per batch of the chunk, one llama_decode in each reader with outputs only
 * for scored positions; then each scored position's rows from all readers at once, handed to
 * `score` and dropped. Memory stays at one row per reader and slot, whatever the vocabulary or text
 * size, instead of keeping a base model's distributions for the whole text.
 */
export async function scoreChunks(readers: DistributionReader[], tokens: Uint32Array, plan: ChunkPlan, bos: number | undefined, score: PositionScorer, ctx: BackendContext & { stepId: string; onChunk?: (chunk: number) => void }): Promise<{ seconds: number }> {
  const started = performance.now();
  const total = plan.chunks * plan.ctx;
  const slots = Math.min(...readers.map((r) => r.slots));
  const lastScored = plan.ctx - 2;
  for (let c = 0; c < plan.chunks; c++) {
    const chunk = chunkTokens(tokens, plan, c, bos);
    for (const r of readers) r.clear();
    for (let start = 0; start < plan.ctx; start += plan.batch) {
      const end = Math.min(plan.ctx, start + plan.batch);
      const from = Math.max(plan.first, start);
      const to = Math.min(lastScored, end - 1);
      const count = Math.max(0, to - from + 1);
      const outputs = Uint32Array.from({ length: count }, (_, k) => from - start + k);
      const batch = chunk.subarray(start, end);
      for (const r of readers) await r.decode(batch, start, outputs);
      if (ctx.signal?.aborted) throw new CancelledError();
      await forEachRow(count, slots, async (k, slot) => {
        const rows = await Promise.all(readers.map((r) => r.row(k, slot)));
        const position = from + k;
        score(rows, chunk[position + 1]!, c * plan.scoredPerChunk + (position - plan.first));
      });
      if (ctx.signal?.aborted) throw new CancelledError();
    }
    const done = (c + 1) * plan.ctx;
    const seconds = (performance.now() - started) / 1000;
    emit(ctx.onEvent, { type: "progress", id: ctx.stepId, unit: "tokens", current: done, total, rate: done / seconds });
    ctx.onChunk?.(c);
  }
  return { seconds: (performance.now() - started) / 1000 };
}
