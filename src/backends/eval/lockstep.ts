import { availableParallelism } from "node:os";
import { emit, type BackendContext } from "../../core/events.js";
import { CancelledError } from "../../core/errors.js";
import { type ChunkPlan, chunkTokens } from "./chunks.js";
import type { BatchPart, DistributionReader } from "../llama/logprobs.js";
import { type RowMeasures, measureOutputs } from "../llama/measure.js";

/**
 * Contexts per model that take turns (see scoreChunks): two when rows are read through node-llama-cpp's
 * sampler (~20 ms a row of JavaScript work) and the main thread has a core beside llama.cpp's threads.
 * Otherwise one: reading rows on the main thread while a decode runs on every core would stall
 * llama.cpp's spinning thread barrier (DESIGN §3), and with slm's addon (`native`) a row costs a fraction
 * of a millisecond, so a second context would only cost its memory and creation.
 */
export function scoringLanes(threads: number, native: boolean): number {
  return !native && threads < availableParallelism() ? 2 : 1;
}

const RUNNING_METRIC_MS = 5000;

/** One scored position: output `k` of the measures of every model there, and its index among all scored tokens. */
export type PositionScorer = (measures: RowMeasures, k: number, index: number) => void;

/**
 * Walks the chunks of `plan` the way llama-perplexity does, with every model in lock-step: per group
 * of `plan.parallel` chunks (one sequence each), empty KV caches; per piece of the chunks, one
 * llama_decode for each model with outputs only for scored positions; then each scored position's
 * rows from all models at once, measured (measure.ts), handed to `score` and dropped. Memory stays at a few rows per model,
 * whatever the vocabulary or text size, instead of keeping a base model's distributions for the whole
 * text.
 *
 * `lanes[l][m]` reads model m in lane l, each lane on its own context: lane l takes groups l, l + L, …
 * and the lanes run at once. Reading rows costs time on the main thread (~0.3 ms a row with slm's
 * addon at 49k tokens; ~20 ms through node-llama-cpp's sampler, which hands each row over as an array
 * of 2 × n_vocab numbers), while decoding runs on a libuv worker thread: with two lanes one context
 * decodes while the other's rows are read. `withKl` also measures KL(model 0 ‖ model 1) per position.
 */
export async function scoreChunks(lanes: DistributionReader[][], tokens: Uint32Array, plan: ChunkPlan, bos: number | undefined, score: PositionScorer, withKl: boolean, ctx: BackendContext & { stepId: string; onRunning?: (chunksDone: number) => void }): Promise<{ seconds: number }> {
  const started = performance.now();
  const total = plan.chunks * plan.ctx;
  const all = lanes.flat();
  const lastScored = plan.ctx - 2;
  // A context loaded for another shape holds fewer sequences or a smaller batch: decode fewer chunks at once.
  const parallel = Math.max(1, Math.min(plan.parallel, ...all.map((r) => Math.min(r.parallel, Math.floor(r.batchSize / plan.piece)))));
  const groups = Math.ceil(plan.chunks / parallel);
  let chunksDone = 0;
  let lastRunning = started;
  let failed = false;
  const check = () => {
    if (ctx.signal?.aborted) throw new CancelledError();
    // Another lane failed: stop here too, so nothing reads a context the caller is about to dispose.
    if (failed) throw new CancelledError();
  };

  const runGroup = async (readers: DistributionReader[], g: number) => {
    const group = Array.from({ length: Math.min(parallel, plan.chunks - g * parallel) }, (_, s) => g * parallel + s);
    const chunks = group.map((c) => chunkTokens(tokens, plan, c, bos));
    for (const r of readers) r.clear();
    for (let start = 0; start < plan.ctx; start += plan.piece) {
      const end = Math.min(plan.ctx, start + plan.piece);
      const from = Math.max(plan.first, start);
      const count = Math.max(0, Math.min(lastScored, end - 1) - from + 1);
      const outputs = Uint32Array.from({ length: count }, (_, k) => from - start + k);
      const parts: BatchPart[] = chunks.map((chunk, s) => ({ sequence: s, start, tokens: chunk.subarray(start, end), outputs }));
      for (const r of readers) await r.decode(parts);
      check();
      const targets = Int32Array.from({ length: count * group.length }, (_, k) => chunks[Math.floor(k / count)]![from + (k % count) + 1]!);
      const measures = await measureOutputs(readers, targets, withKl);
      for (let k = 0; k < targets.length; k++) score(measures, k, group[Math.floor(k / count)]! * plan.scoredPerChunk + (from + (k % count) - plan.first));
      check();
    }
    chunksDone += group.length;
    const done = chunksDone * plan.ctx;
    emit(ctx.onEvent, { type: "progress", id: ctx.stepId, unit: "tokens", current: done, total, rate: done / ((performance.now() - started) / 1000) });
    // The running figure, as llama-perplexity prints it per chunk, but at most every few seconds: a
    // plain-text renderer prints each metric on its own line.
    if (performance.now() - lastRunning >= RUNNING_METRIC_MS && chunksDone < plan.chunks) {
      lastRunning = performance.now();
      ctx.onRunning?.(chunksDone);
    }
  };

  const results = await Promise.allSettled(
    lanes.map(async (readers, l) => {
      try {
        for (let g = l; g < groups; g += lanes.length) await runGroup(readers, g);
      } catch (err) {
        failed = true;
        throw err;
      }
    }),
  );
  const rejected = results.find((r): r is PromiseRejectedResult => r.status === "rejected" && !(r.reason instanceof CancelledError && !ctx.signal?.aborted));
  if (rejected) throw rejected.reason;
  return { seconds: (performance.now() - started) / 1000 };
}
