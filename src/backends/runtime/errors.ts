import { UsageError } from "../../core/errors.js";

/**
 * Errors every runtime throws for the same situations, so that callers (eval, serve) can tell them apart
 * without knowing the runtime: serve answers them with OpenAI's error codes, eval names the question.
 */

/** A prompt (or an embedding input) longer than the context it would be evaluated in. */
export class ContextLengthError extends UsageError {
  constructor(
    readonly promptTokens: number,
    readonly contextSize: number,
    /** Names the prompt in the message ("add-eval line 3", "input[1]"); "the prompt" when left out. */
    where?: string,
    /** What can help instead, where a larger --ctx cannot (a context capped at what the model's graph takes). */
    hint = "Give a larger --ctx.",
  ) {
    super(`${where ? `${where}: the prompt` : "The prompt"} takes ${promptTokens} tokens, the context holds ${contextSize}.`, { hint });
    this.name = "ContextLengthError";
  }
}

/** The model has no way to compute sentence embeddings (its runtime or its architecture). */
export class EmbeddingsUnavailableError extends UsageError {
  constructor(message: string) {
    super(message);
    this.name = "EmbeddingsUnavailableError";
  }
}
