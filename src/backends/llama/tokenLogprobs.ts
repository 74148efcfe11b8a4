import type { LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import { CancelledError, SlmError } from "../../core/errors.js";
import type { PromptTokenLogprob, TokenAlternative, TokenLogprob } from "../runtime/tokenLogprobs.js";
import type { LoadedModel } from "./loader.js";
import type { LogitRows, RowLogprobs } from "./rows.js";
import { tapSamples } from "./serialSampling.js";
import { tokenBytes } from "./tokenBytes.js";

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

/** Each token's own piece, control tokens written out (`</s>`), as llama.cpp's server shows them, and its bytes; cached per model. */
const pieces = new WeakMap<LlamaModel, Map<number, { text: string; bytes: number[] }>>();
function pieceOf(model: LlamaModel, token: number): { text: string; bytes: number[] } {
  let cache = pieces.get(model);
  if (!cache) pieces.set(model, (cache = new Map()));
  let piece = cache.get(token);
  if (piece === undefined) {
    const text = model.detokenize([token as Token], true);
    cache.set(token, (piece = { text, bytes: tokenBytes(model, token, text) }));
  }
  return piece;
}

function alternatives(model: LlamaModel, read: RowLogprobs): TokenAlternative[] {
  return read.top.map((t) => ({ token: t.token, ...pieceOf(model, t.token), logprob: t.logprob }));
}

/**
 * The log-probabilities of what one generation samples, each read in the tap from its own row. The
 * answer's are those node-llama-cpp releases as answer text (`release`, from its onToken, called with
 * a chunk's tokens just before onTextChunk gets the chunk's text): not the tokens it samples but drops —
 * a segment such as a model's thoughts, text held back for a stop string and then cut, the end token.
 */
export class GeneratedLogprobs {
  private readonly sampled: TokenLogprob[] = [];
  /** The first sampled entry not matched to a released token yet. */
  private next = 0;
  private readonly released: TokenLogprob[] = [];
  private handedOut = 0;
  private readonly untap: () => void;
  private readonly model: LlamaModel;

  constructor(loaded: LoadedModel, sequence: LlamaContextSequence, rows: LogitRows, top: number) {
    const model = (this.model = loaded.model);
    this.untap = tapSamples(loaded.context, sequenceIdOf(sequence), async (row) => {
      if (row.token < 0) return;
      const read = await rows.read(row.batchIndex, row.token, top);
      this.sampled.push({ token: row.token, ...pieceOf(model, row.token), logprob: read.logprob, top: alternatives(model, read) });
    });
  }

  /** Tokens node-llama-cpp released as answer text, in order; each is matched to its sampled entry. */
  release(tokens: readonly number[]): void {
    for (const t of tokens) {
      let k = this.next;
      while (k < this.sampled.length && this.sampled[k]!.token !== t) k++;
      // A token it made up rather than sampled (text before a stop string, tokenized again) has no row.
      if (k === this.sampled.length) continue;
      this.released.push(this.sampled[k]!);
      this.next = k + 1;
    }
  }

  /** The released entries not handed out yet: those of the text chunk just released (streaming). */
  take(): TokenLogprob[] {
    const out = this.released.slice(this.handedOut);
    this.handedOut = this.released.length;
    return out;
  }

  /** The answer's entries, then the end-of-generation token it stopped on, if so. */
  finish(stopReason: string): TokenLogprob[] {
    const tokens = [...this.released];
    const end = this.sampled.at(-1);
    if (stopReason === "eogToken" && end && this.sampled.length > this.next && this.model.isEogToken(end.token as Token)) tokens.push({ ...end, end: true });
    return tokens;
  }

  /** Of the answer's `tokens`, those take has not handed out (the end token, when streaming). */
  notHandedOut(tokens: readonly TokenLogprob[]): TokenLogprob[] {
    return tokens.slice(this.handedOut);
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
  const out: PromptTokenLogprob[] = tokens.map((token) => ({ token, ...pieceOf(model, token), logprob: null, top: null }));
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
