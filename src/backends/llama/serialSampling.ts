import type { LlamaContext } from "node-llama-cpp";
import { SlmError } from "../../core/errors.js";

/** The members of node-llama-cpp's native context binding (AddonContext, `LlamaContext._ctx`) used here. */
interface SamplingBinding {
  initBatch(size: number): void;
  addToBatch(sequenceId: number, firstTokenIndex: number, tokens: Uint32Array, logitIndexes: Uint32Array): Uint32Array;
  sampleToken(batchLogitIndex: number, ...rest: unknown[]): Promise<unknown>;
}

/** One token node-llama-cpp sampled: for which sequence and position, from which output row of the last decode. */
export interface SampledRow {
  sequenceId: number;
  /** Index in the sequence of the token whose output row this is (the sampled token goes at position + 1). */
  position: number;
  batchIndex: number;
  /** The sampled token (-1 when node-llama-cpp's sampler failed). */
  token: number;
}

/**
 * Called for a sampled row while that row is still valid: before the context's next sample or decode.
 * A returned promise holds both back until it settles, so keep the work short.
 */
export type SampleListener = (row: SampledRow) => void | Promise<void>;

interface Wrapped {
  raw: SamplingBinding["sampleToken"];
  /** Output row of the batch being decoded → the sequence and position it belongs to. */
  rows: Map<number, { sequenceId: number; position: number }>;
  listeners: Map<number, SampleListener>;
}

const wrapped = new WeakMap<object, Wrapped>();

function bindingOf(context: LlamaContext): SamplingBinding {
  const addon = (context as unknown as { _ctx?: Partial<SamplingBinding> })._ctx;
  if (!addon || (["initBatch", "addToBatch", "sampleToken"] as const).some((m) => typeof addon[m] !== "function")) {
    throw new SlmError("This node-llama-cpp build does not expose the native sampling calls slm needs (it expects node-llama-cpp 3.21.1 exactly).", {
      hint: "Reinstall slm's dependencies (npm ci) so that node-llama-cpp is the pinned version.",
    });
  }
  return addon as SamplingBinding;
}

/**
 * Makes the context's native sampling calls run one at a time, in the order they were made, and lets
 * listeners see each sampled row (tapSamples).
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
 * The members are internal, so they are checked at run time; node-llama-cpp is pinned exactly.
 */
export function serializeSampling(context: LlamaContext): void {
  wrap(context);
}

function wrap(context: LlamaContext): Wrapped {
  const addon = bindingOf(context);
  const known = wrapped.get(addon);
  if (known) return known;
  const raw = addon.sampleToken.bind(addon);
  const initBatch = addon.initBatch.bind(addon);
  const addToBatch = addon.addToBatch.bind(addon);
  const w: Wrapped = { raw, rows: new Map(), listeners: new Map() };
  wrapped.set(addon, w);
  let last: Promise<unknown> = Promise.resolve();
  // Own properties: the binding's prototype methods are read-only, so plain assignment is refused.
  const define = (name: string, value: unknown) => Object.defineProperty(addon, name, { configurable: true, value });
  define("initBatch", (size: number) => {
    w.rows.clear();
    initBatch(size);
  });
  // node-llama-cpp learns which output row is whose from addToBatch's answer; the tap learns it the same way.
  define("addToBatch", (sequenceId: number, firstTokenIndex: number, tokens: Uint32Array, logitIndexes: Uint32Array) => {
    const batchIndexes = addToBatch(sequenceId, firstTokenIndex, tokens, logitIndexes);
    batchIndexes.forEach((b, i) => w.rows.set(b, { sequenceId, position: firstTokenIndex + logitIndexes[i]! }));
    return batchIndexes;
  });
  define("sampleToken", (batchIndex: number, ...rest: unknown[]) => {
    const result = last.then(async () => {
      const sampled = await raw(batchIndex, ...rest);
      const owner = w.rows.get(batchIndex);
      const listener = owner && w.listeners.get(owner.sequenceId);
      if (owner && listener) {
        // node-llama-cpp answers a token, or [token, probabilities, confidence] when asked for those.
        const token = Array.isArray(sampled) ? (sampled[0] as number) : (sampled as number);
        await listener({ ...owner, batchIndex, token: typeof token === "number" ? token : -1 });
      }
      return sampled;
    });
    last = result.catch(() => undefined);
    return result;
  });
  return w;
}

/**
 * Calls `listener` for every token sampled for the sequence `sequenceId` of `context`, while the output
 * row it was sampled from is still readable (rows.ts): inside the serialized chain, after the sample and
 * before the next one. node-llama-cpp decodes the next batch only once every sample of the last one has
 * settled, so the row also outlives the listener's promise under `serve --parallel`. One listener per
 * sequence; returns the function that removes it.
 */
export function tapSamples(context: LlamaContext, sequenceId: number, listener: SampleListener): () => void {
  const w = wrap(context);
  if (w.listeners.has(sequenceId)) throw new Error(`sequence ${sequenceId} already has a sample listener`);
  w.listeners.set(sequenceId, listener);
  return () => {
    if (w.listeners.get(sequenceId) === listener) w.listeners.delete(sequenceId);
  };
}

/**
 * The context's native sampleToken, not serialized: for reading a row from inside a listener (the
 * serialized one would wait for the listener, which waits for it).
 */
export function rawSampleToken(context: LlamaContext): SamplingBinding["sampleToken"] {
  return wrap(context).raw;
}
