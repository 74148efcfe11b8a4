import { CancelledError } from "../../core/errors.js";
import { emit, type BackendContext } from "../../core/events.js";
import type { GenerationSlot, RuntimeModel } from "../runtime/types.js";

/**
 * Runs `work` for every item on the model's parallel slots: one worker per slot, each taking the next
 * item when it finishes one. On llama.cpp, workers that wait for a decode at the same moment are
 * evaluated together: node-llama-cpp gathers every sequence's pending tokens into one llama_decode per
 * cycle, so N questions cost about one decode per generated token instead of N. That matters because
 * `slm` runs inference with one libuv worker (bin/slm.js), so native calls never overlap otherwise.
 *
 * Results keep the items' order. Progress events carry `id`.
 */
export async function forEachOnSlots<I, R>(
  model: RuntimeModel,
  items: readonly I[],
  work: (slot: GenerationSlot, item: I, index: number) => Promise<R>,
  progressId: string,
  ctx: BackendContext,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  const workers = Math.max(1, Math.min(model.sequences, items.length));
  let next = 0;
  let done = 0;
  // The first failure stops every worker from taking more items; all are awaited before it is
  // rethrown, so no worker still uses the context when the caller disposes it.
  let failure: { err: unknown } | undefined;
  const started = performance.now();
  emit(ctx.onEvent, { type: "progress", id: progressId, unit: "questions", current: 0, total: items.length });
  const run = async () => {
    let slot: GenerationSlot | undefined;
    try {
      slot = await model.openSlot();
      while (next < items.length && !failure) {
        if (ctx.signal?.aborted) throw new CancelledError();
        const i = next++;
        results[i] = await work(slot, items[i]!, i);
        done++;
        const seconds = (performance.now() - started) / 1000;
        emit(ctx.onEvent, { type: "progress", id: progressId, unit: "questions", current: done, total: items.length, rate: seconds > 0 ? done / seconds : undefined });
      }
    } catch (err) {
      failure ??= { err };
    } finally {
      slot?.dispose();
    }
  };
  await Promise.all(Array.from({ length: workers }, run));
  if (failure) throw failure.err;
  return results;
}
