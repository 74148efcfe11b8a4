/**
 * Per-token log-probabilities in the runtime-neutral shape serve turns into OpenAI's: always the model's
 * own distribution (temperature 1, no top-k/top-p/min-p cut), whatever the request sampled with.
 */

/** A token with its text (the token's own piece, control tokens written out) and ln p. */
export interface TokenAlternative {
  token: number;
  text: string;
  logprob: number;
  /** The token's own bytes, where the runtime knows them (a byte token's text alone is U+FFFD); else `text`'s UTF-8. */
  bytes?: number[];
}

/** A token of the answer, with the `top` most likely tokens at its position (most likely first). */
export interface TokenLogprob extends TokenAlternative {
  top: TokenAlternative[];
  /**
   * The end-of-generation token the answer stopped on: generated, but not part of the text. Listed last,
   * as OpenAI's and vLLM's completions list it (lm-evaluation-harness drops the last generated token).
   */
  end?: true;
}

/** A token of the prompt (echo): the first one has nothing before it, so no log-probability. */
export interface PromptTokenLogprob {
  token: number;
  text: string;
  bytes?: number[];
  logprob: number | null;
  top: TokenAlternative[] | null;
}
