import type { LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import { CancelledError, SlmError } from "../../core/errors.js";
import { AnswerTokens } from "../runtime/answerTokens.js";
import type { PromptTokenLogprob, TokenAlternative } from "../runtime/tokenLogprobs.js";
import type { LoadedModel } from "./loader.js";
import type { LogitRows, RowLogprobs } from "./rows.js";
import { tapSamples } from "./serialSampling.js";

/**
 * Log-probabilities of the tokens a sequence generates or is given (serve's logprobs and echo), read
 * from each token's own output row while it is valid: the sampling tap (serialSampling.ts) reports the
 * row, LogitRows (rows.ts) reads the model's full distribution from it.
 */

function sequenceIdOf(sequence: LlamaContextSequence): number {
  const id = (sequence as unknown as { _sequenceId?: unknown })._sequenceId;
  if (typeof id !== "number") throw new SlmError("This node-llama-cpp build does not expose a sequence's id (slm expects node-llama-cpp 3.21.1 exactly).");
  return id;
}

/** Each token's own piece, control tokens written out (`</s>`), as llama.cpp's server shows them; cached per model. */
const pieces = new WeakMap<LlamaModel, Map<number, string>>();
function pieceOf(model: LlamaModel, token: number): string {
  let cache = pieces.get(model);
  if (!cache) pieces.set(model, (cache = new Map()));
  let text = cache.get(token);
  if (text === undefined) cache.set(token, (text = model.detokenize([token as Token], true)));
  return text;
}

function alternatives(model: LlamaModel, read: RowLogprobs): TokenAlternative[] {
  return read.top.map((t) => ({ token: t.token, text: pieceOf(model, t.token), logprob: t.logprob }));
}

/**
 * The log-probabilities of what one generation samples, each read in the tap from its own row; the
 * answer's are picked out by AnswerTokens.
 */
export class GeneratedLogprobs extends AnswerTokens {
  private readonly untap: () => void;

  constructor(loaded: LoadedModel, sequence: LlamaContextSequence, rows: LogitRows, top: number) {
    const { model } = loaded;
    super(
      (tokens) => model.detokenize(tokens as Token[], false),
      (token) => model.isEogToken(token as Token),
    );
    this.untap = tapSamples(loaded.context, sequenceIdOf(sequence), async (row) => {
      if (row.token < 0) return;
      const read = await rows.read(row.batchIndex, row.token, top);
      this.push({ token: row.token, text: pieceOf(model, row.token), logprob: read.logprob, top: alternatives(model, read) });
    });
  }

  stop(): void {
    this.untap();
  }
}

/**
 * The log-probability of each prompt token after those before it: the prompt is evaluated afresh on the
 * sequence with a (greedy, cheap) sample after every token but the last, so that each output row passes
 * the tap, which reads the next prompt token's log-probability from it.
 */
export async function promptLogprobs(loaded: LoadedModel, sequence: LlamaContextSequence, rows: LogitRows, tokens: readonly number[], top: number, signal?: AbortSignal): Promise<PromptTokenLogprob[]> {
  const { model } = loaded;
  const out: PromptTokenLogprob[] = tokens.map((token) => ({ token, text: pieceOf(model, token), logprob: null, top: null }));
  if (tokens.length === 0) return out;
  await sequence.clearHistory();
  const untap = tapSamples(loaded.context, sequenceIdOf(sequence), async (row) => {
    const next = row.position + 1;
    if (next >= tokens.length) return;
    const read = await rows.read(row.batchIndex, tokens[next]!, top);
    out[next] = { ...out[next]!, logprob: read.logprob, top: alternatives(model, read) };
  });
  const sample = { generateNext: { token: true, options: { temperature: 0 } } } as const;
  try {
    await sequence.controlledEvaluate(tokens.map((t, i) => (i < tokens.length - 1 ? [t as Token, sample] : (t as Token))));
  } finally {
    untap();
  }
  if (signal?.aborted) throw new CancelledError();
  if (out.slice(1).some((t) => t.logprob === null)) throw new SlmError("Some prompt tokens got no log-probability (the sampling tap missed their rows).");
  return out;
}
