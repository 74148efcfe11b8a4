import { emit, type BackendContext } from "../../core/events.js";
import { CancelledError } from "../../core/errors.js";
import { type ChunkPlan, chunkTokens } from "./chunks.js";
import { type BatchPart, type DistributionReader, type DistributionRow, forEachRow } from "./logprobs.js";

/** One scored position: the distributions of every reader there, the token that follows, and its index among all scored tokens. */
export type PositionScorer = (rows: DistributionRow[], target: number, index: number) => void;

/**
 * Walks the chunks of `plan` the way llama-perplexity does, with every reader in lock-step: per group
 * of `plan.parallel` chunks (one sequence each), empty KV caches; per piece of the chunks, one
 * llama_decode in each reader with outputs only for scored positions; then each scored position's
 * rows from all readers at once, handed to `score` and dropped. Memory stays at one row per reader
 * and slot, whatever the vocabulary or text size, instead of keeping a base model's distributions for
 * the whole text.
 */
export async function scoreChunks(readers: DistributionReader[], tokens: Uint32Array, plan: ChunkPlan, bos: number | undefined, score: PositionScorer, ctx: BackendContext & { stepId: string; onChunk?: (chunksDone: number) => void }): Promise<{ seconds: number }> {
  const started = performance.now();
  const total = plan.chunks * plan.ctx;
  const slots = Math.min(...readers.map((r) => r.slots));
  const lastScored = plan.ctx - 2;
  // A context loaded for another shape holds fewer sequences or a smaller batch: decode fewer chunks at once.
  const parallel = Math.max(1, Math.min(plan.parallel, ...readers.map((r) => Math.min(r.parallel, Math.floor(r.batchSize / plan.piece)))));
  for (let g = 0; g < plan.chunks; g += parallel) {
    const group = Array.from({ length: Math.min(parallel, plan.chunks - g) }, (_, s) => g + s);
    const chunks = group.map((c) => chunkTokens(tokens, plan, c, bos));
    for (const r of readers) r.clear();
    for (let start = 0; start < plan.ctx; start += plan.piece) {
      const end = Math.min(plan.ctx, start + plan.piece);
      const from = Math.max(plan.first, start);
      const count = Math.max(0, Math.min(lastScored, end - 1) - from + 1);
      const outputs = Uint32Array.from({ length: count }, (_, k) => from - start + k);
      const parts: BatchPart[] = chunks.map((chunk, s) => ({ sequence: s, start, tokens: chunk.subarray(start, end), outputs }));
      for (const r of readers) await r.decode(parts);
      if (ctx.signal?.aborted) throw new CancelledError();
      await forEachRow(count * group.length, slots, async (k, slot) => {
        const rows = await Promise.all(readers.map((r) => r.row(k, slot)));
        const s = Math.floor(k / count);
        const position = from + (k % count);
        score(rows, chunks[s]![position + 1]!, group[s]! * plan.scoredPerChunk + (position - plan.first));
      });
      if (ctx.signal?.aborted) throw new CancelledError();
    }
    const chunksDone = g + group.length;
    const done = chunksDone * plan.ctx;
    emit(ctx.onEvent, { type: "progress", id: ctx.stepId, unit: "tokens", current: done, total, rate: done / ((performance.now() - started) / 1000) });
    ctx.onChunk?.(chunksDone);
  }
  return { seconds: (performance.now() - started) / 1000 };
}
