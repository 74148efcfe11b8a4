import type { ControlledEvaluateInputItem, LlamaContextSequence, Token } from "node-llama-cpp";
import { CancelledError } from "../../core/errors.js";

/** The model's full next-token distribution, untouched: temperature 1, no top-k, top-p or min-p cut. */
const FULL_DISTRIBUTION = { probabilities: true, options: { temperature: 1, topK: 0, topP: 1, minP: 0 } } as const;

/**
 * Summed log-probability of each continuation's tokens after `prompt`, on one sequence. The prompt
 * (but its last token) is evaluated once and kept; for each continuation the last prompt token and the
 * continuation (but its last token) are evaluated with the next-token distribution after each, then
 * erased again, so the next continuation starts from the same state.
 */
export async function continuationLogLikelihoods(sequence: LlamaContextSequence, prompt: readonly Token[], continuations: readonly (readonly Token[])[], signal?: AbortSignal): Promise<number[]> {
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
    const input: ControlledEvaluateInputItem[] = [prompt[keep]!, ...cont.slice(0, -1)].map((t) => [t, { generateNext: FULL_DISTRIBUTION }]);
    const results = await sequence.controlledEvaluate(input);
    let sum = 0;
    cont.forEach((t, i) => {
      const p = results[i]?.next.probabilities?.get(t) ?? 0;
      sum += Math.log(p);
    });
    out.push(sum);
    await sequence.eraseContextTokenRanges([{ start: keep, end: sequence.nextTokenIndex }]);
  }
  return out;
}
