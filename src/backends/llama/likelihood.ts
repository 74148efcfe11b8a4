import type { ControlledEvaluateInputItem, LlamaContextSequence, Token } from "node-llama-cpp";
import { CancelledError } from "../../core/errors.js";
import type { NativeLogitsAddon } from "./native/addon.js";
import { tapSamples } from "./serialSampling.js";

/** The model's full next-token distribution, untouched: temperature 1, no top-k, top-p or min-p cut. */
const FULL_DISTRIBUTION = { probabilities: true, options: { temperature: 1, topK: 0, topP: 1, minP: 0 } } as const;
/** A greedy pick (cheap, O(n_vocab) in C++): only so that node-llama-cpp samples the row, which the tap then reads. */
const SAMPLE_ONLY = { token: true, options: { temperature: 0 } } as const;

/** slm's addon and the AddonContext of the sequence's context it reads (native/probe.ts). */
export interface NativeRowsHandle {
  addon: NativeLogitsAddon;
  handle: object;
}

/**
 * Summed log-probability of each continuation's tokens after `prompt`, on one sequence. The prompt
 * (but its last token) is evaluated once and kept; for each continuation the last prompt token and the
 * continuation (but its last token) are evaluated with the next-token distribution after each, then
 * erased again, so the next continuation starts from the same state.
 *
 * With `native`, each row's ln p(token) comes from slm's addon, read by a sampling tap while the row is
 * valid (serialSampling.ts); otherwise from node-llama-cpp's full probability Map of every row.
 */
export async function continuationLogLikelihoods(sequence: LlamaContextSequence, prompt: readonly Token[], continuations: readonly (readonly Token[])[], signal?: AbortSignal, native?: NativeRowsHandle): Promise<number[]> {
  if (prompt.length === 0) throw new Error("continuationLogLikelihoods needs a prompt of at least one token");
  const keep = prompt.length - 1;
  // Whatever the sequence holds beyond the shared prefix (an earlier question) is erased.
  await sequence.adaptStateToTokens(prompt.slice(0, keep), false);
  if (sequence.nextTokenIndex < keep) await sequence.evaluateWithoutGeneratingNewTokens(prompt.slice(sequence.nextTokenIndex, keep));
  const out: number[] = [];
  for (const cont of continuations) {
    if (signal?.aborted) throw new CancelledError();
    if (cont.length === 0) {
      out.push(0);
      continue;
    }
    const tokens = [prompt[keep]!, ...cont.slice(0, -1)];
    out.push(native ? await nativeSum(sequence, tokens, cont, keep, native) : await samplerSum(sequence, tokens, cont));
    await sequence.eraseContextTokenRanges([{ start: keep, end: sequence.nextTokenIndex }]);
  }
  return out;
}

async function samplerSum(sequence: LlamaContextSequence, tokens: readonly Token[], cont: readonly Token[]): Promise<number> {
  const input: ControlledEvaluateInputItem[] = tokens.map((t) => [t, { generateNext: FULL_DISTRIBUTION }]);
  const results = await sequence.controlledEvaluate(input);
  let sum = 0;
  cont.forEach((t, i) => {
    const probs = results[i]?.next.probabilities;
    // The softmax is float32 (its sum off 1 by up to ~1e-6): renormalised in float64, as logprobs.ts does.
    let total = 0;
    for (const p of probs?.values() ?? []) total += p;
    sum += Math.log(probs?.get(t) ?? 0) - Math.log(total);
  });
  return sum;
}

async function nativeSum(sequence: LlamaContextSequence, tokens: readonly Token[], cont: readonly Token[], first: number, native: NativeRowsHandle): Promise<number> {
  const logprobs = new Float64Array(cont.length).fill(Number.NaN);
  const sequenceId = (sequence as unknown as { _sequenceId: number })._sequenceId;
  const untap = tapSamples(sequence.context, sequenceId, ({ position, batchIndex }) => {
    const i = position - first;
    if (i >= 0 && i < cont.length) logprobs[i] = native.addon.topRow(native.handle, batchIndex, cont[i]!, 0)[0]!;
  });
  try {
    await sequence.controlledEvaluate(tokens.map((t) => [t, { generateNext: SAMPLE_ONLY }]));
  } finally {
    untap();
  }
  let sum = 0;
  for (const lp of logprobs) {
    if (Number.isNaN(lp)) throw new Error("a continuation token's output row was not sampled (node-llama-cpp's sampling tap missed it)");
    sum += lp;
  }
  return sum;
}
