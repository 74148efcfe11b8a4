import type { LlamaContext } from "node-llama-cpp";
import { SlmError } from "../../core/errors.js";

/** The one member of node-llama-cpp's native context binding (AddonContext, `LlamaContext._ctx`) this wraps. */
interface SamplingBinding {
  sampleToken(...args: unknown[]): Promise<unknown>;
}

const serialized = new WeakSet<object>();

/**
 * Makes the context's native sampling calls run one at a time, in the order they were made.
 *
 * After a llama_decode whose micro-batches did not keep the batch's order (several sequences in one
 * batch, which llama.cpp splits per sequence), llama.cpp puts the output rows back in order lazily:
 * the first call that reads an output (llama_get_logits_ith, llama_get_sampled_*_ith) swaps rows of
 * the logits buffer in place (llama_context::output_reorder). Two threads doing that at once swap
 * some rows twice, and a sequence then samples from another sequence's row. node-llama-cpp starts
 * the sampling of every sequence of a batch at the same moment, each as an async worker on node's
 * libuv pool, so whenever that pool has more than one thread (node's default is 4; bin/slm.js sets
 * one for inference commands, but a user's UV_THREADPOOL_SIZE and other entry points keep theirs)
 * parallel answers could swap tokens. Measured on tiny-arith with node's default pool: 2 of 150
 * evaluations of 50 questions on 8 sequences (what `quantize --sweep` ran) changed a few answers, and
 * about 1 decode in 100 handed some of 16 sequences another's row (test/e2e/parallelSampling.test.ts).
 * Queued here, the calls run as they do on a one-thread pool, which is deterministic; the JavaScript
 * that reads one row still overlaps the native sampling of the next (logprobs.ts).
 *
 * The member is internal, so it is checked at run time; node-llama-cpp is pinned exactly.
 */
export function serializeSampling(context: LlamaContext): void {
  const addon = (context as unknown as { _ctx?: Partial<SamplingBinding> })._ctx;
  if (!addon || typeof addon.sampleToken !== "function") {
    throw new SlmError("This node-llama-cpp build does not expose the native sampling call slm needs to keep parallel answers apart (it expects node-llama-cpp 3.21.1 exactly).", {
      hint: "Reinstall slm's dependencies (npm ci) so that node-llama-cpp is the pinned version.",
    });
  }
  if (serialized.has(addon)) return;
  serialized.add(addon);
  const sample = addon.sampleToken.bind(addon);
  let last: Promise<unknown> = Promise.resolve();
  // An own property: the binding's prototype methods are read-only, so plain assignment is refused.
  Object.defineProperty(addon, "sampleToken", {
    configurable: true,
    value: (...args: unknown[]) => {
      const result = last.then(() => sample(...args));
      last = result.catch(() => undefined);
      return result;
    },
  });
}
