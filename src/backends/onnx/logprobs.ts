import type { PromptTokenLogprob, TokenAlternative, TokenLogprob } from "../runtime/tokenLogprobs.js";
import type { OnnxTokenizer } from "./tokenizer.js";

/** ln Σ exp(logit) over the row, in float64, shifted by the largest logit so that nothing overflows. */
export function logNormalizer(row: Float32Array): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i]! - max);
  return max + Math.log(sum);
}

/**
 * Log-probabilities from a row of logits the ONNX runtime already has in JavaScript: a float64
 * log-softmax over the whole vocabulary (the model's own distribution: temperature 1, no cut), the
 * target's and the `top` most likely tokens' (ties: lowest id first, as the llama.cpp runtime's).
 */
export function rowLogprobs(row: Float32Array, target: number, top: number): { logprob: number; top: { token: number; logprob: number }[] } {
  const logNorm = logNormalizer(row);
  // The best `top` ids, kept sorted (most likely first): one pass, an insertion only for a contender.
  const best: number[] = [];
  for (let i = 0; i < row.length && top > 0; i++) {
    if (best.length === top && row[i]! <= row[best[top - 1]!]!) continue;
    let at = best.length === top ? top - 1 : best.length;
    while (at > 0 && row[best[at - 1]!]! < row[i]!) at--;
    best.splice(at, 0, i);
    if (best.length > top) best.pop();
  }
  return { logprob: row[target]! - logNorm, top: best.map((token) => ({ token, logprob: row[token]! - logNorm })) };
}

/** A token's own piece, control tokens written out. */
function pieceOf(tokenizer: OnnxTokenizer, token: number): string {
  return tokenizer.decode([token], true);
}

function withText(tokenizer: OnnxTokenizer, read: ReturnType<typeof rowLogprobs>): TokenAlternative[] {
  return read.top.map((t) => ({ ...t, text: pieceOf(tokenizer, t.token) }));
}

/** The sampled `token`'s entry, read from the row it was sampled from. */
export function sampledLogprob(tokenizer: OnnxTokenizer, row: Float32Array, token: number, top: number): TokenLogprob {
  const read = rowLogprobs(row, token, top);
  return { token, text: pieceOf(tokenizer, token), logprob: read.logprob, top: withText(tokenizer, read) };
}

/** The entry of prompt token `token`, from the row of the token before it (or none: the first). */
export function promptLogprob(tokenizer: OnnxTokenizer, row: Float32Array | undefined, token: number, top: number): PromptTokenLogprob {
  if (!row) return { token, text: pieceOf(tokenizer, token), logprob: null, top: null };
  return sampledLogprob(tokenizer, row, token, top);
}
