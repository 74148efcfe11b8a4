import type { ChatHistoryItem, ChatWrapper, ChatWrapperGeneratedContextState, LlamaChat, LlamaContextSequence, LlamaText, Token } from "node-llama-cpp";
import { CancelledError } from "../../core/errors.js";
import { ContextLengthError } from "../runtime/errors.js";
import type { samplingFor } from "./generate.js";
import type { LoadedModel } from "./loader.js";

/** One generated answer. */
export interface Answer {
  text: string;
  /** As LlamaChat names them, plus "contextFull" when the context ran out before --max-tokens. */
  stopReason: "eogToken" | "stopGenerationTrigger" | "customStopTrigger" | "maxTokens" | "contextFull" | string;
  tokens: number;
  /** The templated prompt's length. */
  promptTokens: number;
}

export type Sampling = ReturnType<typeof samplingFor>;

/**
 * Where an answer ends besides an end-of-generation token: the chat wrapper's stop triggers and the
 * user's --stop texts. Triggers with special tokens are matched as token sequences, plain ones as text.
 */
type StopReason = "stopGenerationTrigger" | "customStopTrigger";

class StopTriggers {
  private readonly tokenTriggers: Token[][] = [];
  private readonly textTriggers: { text: string; reason: StopReason }[] = [];

  constructor(loaded: LoadedModel, triggers: readonly LlamaText[], custom: readonly string[]) {
    for (const t of triggers) {
      const text = plainText(t);
      if (text === undefined) this.tokenTriggers.push(t.tokenize(loaded.model.tokenizer));
      else if (text !== "") this.textTriggers.push({ text, reason: "stopGenerationTrigger" });
    }
    for (const text of custom) if (text !== "") this.textTriggers.push({ text, reason: "customStopTrigger" });
  }

  /** The answer's text and why it stopped, if a trigger has appeared at the end of `out`. */
  check(out: readonly Token[], detokenize: (t: readonly Token[]) => string): { text: string; reason: StopReason } | undefined {
    for (const seq of this.tokenTriggers) {
      if (seq.length > 0 && seq.length <= out.length && seq.every((t, i) => out[out.length - seq.length + i] === t)) return { text: detokenize(out.slice(0, -seq.length)), reason: "stopGenerationTrigger" };
    }
    if (this.textTriggers.length === 0) return undefined;
    const text = detokenize(out);
    for (const s of this.textTriggers) {
      const at = text.indexOf(s.text);
      if (at >= 0) return { text: text.slice(0, at), reason: s.reason };
    }
    return undefined;
  }
}

/** LlamaText that is plain text (no special tokens), as a string; undefined otherwise. */
function plainText(t: LlamaText): string | undefined {
  return t.values.every((v) => typeof v === "string") ? t.values.join("") : undefined;
}

type StateExtras = { prefixTriggers?: unknown[]; noPrefixTrigger?: unknown; rerender?: unknown; ignoreStartText?: LlamaText[]; functionCall?: { initiallyEngaged?: boolean } };

/**
 * Whether the wrapper asks for more than "render the chat, generate until a stop, drop some leading
 * text": thought or comment segments, prefix triggers, re-rendering, function-call modes, or start
 * text with special tokens in it. Those need node-llama-cpp's full chat engine (LlamaChat) to separate
 * the answer from the rest.
 */
function needsChatEngine(wrapper: ChatWrapper, state: ChatWrapperGeneratedContextState): boolean {
  const segments = wrapper.settings.segments;
  if (segments?.thought || segments?.comment) return true;
  const s = state as StateExtras;
  return (s.prefixTriggers?.length ?? 0) > 0 || s.noPrefixTrigger !== undefined || s.rerender !== undefined || s.functionCall?.initiallyEngaged === true || (s.ignoreStartText ?? []).some((t) => plainText(t) === undefined);
}

/** The answer without the longest of the wrapper's "ignore at the start" texts (e.g. leading whitespace), as LlamaChat drops it. */
function dropStartText(text: string, state: ChatWrapperGeneratedContextState): string {
  const starts = ((state as StateExtras).ignoreStartText ?? []).map(plainText).filter((t): t is string => !!t && text.startsWith(t));
  const longest = starts.reduce((a, b) => (b.length > a.length ? b : a), "");
  return text.slice(longest.length);
}

/**
 * Answers chat questions on one sequence, reusing it (and its evaluated prefix) from one question to
 * the next. Most chat templates only need the rendered prompt and a stop condition: those answers come
 * from a plain token loop on the sequence (sequence.evaluate), with nothing set up per question.
 * Templates with thought segments and the like go through LlamaChat, created once per sequence.
 */
export class SequenceAnswerer {
  private chat?: LlamaChat;

  constructor(
    private readonly loaded: LoadedModel,
    private readonly sequence: LlamaContextSequence,
    private readonly wrapper: ChatWrapper,
    private readonly sampling: Sampling,
    private readonly signal?: AbortSignal,
  ) {}

  /** `engine: "chat"` forces LlamaChat (tests compare the two paths). `where` names the question in errors. */
  async answer(history: ChatHistoryItem[], seed: number | undefined, where?: string, engine: "auto" | "chat" = "auto"): Promise<Answer> {
    const state = this.wrapper.generateContextState({ chatHistory: [...history, { type: "model", response: [] }] });
    const prompt = state.contextText.tokenize(this.loaded.model.tokenizer);
    if (prompt.length + 1 >= this.loaded.context.contextSize) {
      throw new ContextLengthError(prompt.length, this.loaded.context.contextSize, where);
    }
    if (engine === "chat" || needsChatEngine(this.wrapper, state)) return { ...(await this.answerWithChat(history, seed)), promptTokens: prompt.length };
    const a = await this.answerFast(prompt, new StopTriggers(this.loaded, state.stopGenerationTriggers, this.sampling.customStopTriggers ?? []), seed);
    return { ...a, text: dropStartText(a.text, state), promptTokens: prompt.length };
  }

  private async answerFast(prompt: Token[], stops: StopTriggers, seed: number | undefined): Promise<Omit<Answer, "promptTokens">> {
    const seq = this.sequence;
    const model = this.loaded.model;
    // Keep what the sequence already holds of this prompt (a shared system prompt or few-shot
    // examples), but evaluate at least the last prompt token: its logits give the first answer token.
    const keep = Math.min(seq.compareContextTokens(prompt).firstDifferentIndex, prompt.length - 1);
    if (seq.nextTokenIndex > keep) await seq.eraseContextTokenRanges([{ start: keep, end: seq.nextTokenIndex }]);
    const s = this.sampling;
    const room = this.loaded.context.contextSize - prompt.length - 1;
    const maxTokens = Math.min(s.maxTokens, room);
    const out: Token[] = [];
    const detokenize = (t: readonly Token[]) => model.detokenize(t, false);
    let stopReason: Answer["stopReason"] = maxTokens < s.maxTokens ? "contextFull" : "maxTokens";
    let stopped: { text: string; reason: StopReason } | undefined;
    const tokens = seq.evaluate(prompt.slice(keep), {
      temperature: s.temperature,
      topK: s.topK,
      topP: s.topP,
      minP: s.minP,
      seed,
      // Hand over end-of-generation tokens instead of ending quietly, so the stop reason is known.
      yieldEogToken: true,
      repeatPenalty: s.repeatPenalty ? { punishTokens: () => out.slice(-64), penalty: s.repeatPenalty.penalty } : undefined,
    });
    for await (const token of tokens) {
      if (this.signal?.aborted) throw new CancelledError();
      if (model.isEogToken(token)) {
        stopReason = "eogToken";
        break;
      }
      out.push(token);
      stopped = stops.check(out, detokenize);
      if (stopped) {
        stopReason = stopped.reason;
        break;
      }
      if (out.length >= maxTokens) break;
    }
    // A last token that ends inside a multi-byte character detokenizes to U+FFFD; LlamaChat holds such
    // bytes back and drops them when the answer ends, and so does this.
    return { text: (stopped?.text ?? detokenize(out)).replace(/\uFFFD+$/, ""), stopReason, tokens: out.length };
  }

  private async answerWithChat(history: ChatHistoryItem[], seed: number | undefined): Promise<Omit<Answer, "promptTokens">> {
    if (!this.chat) {
      const { LlamaChat } = await import("node-llama-cpp");
      this.chat = new LlamaChat({ contextSequence: this.sequence, chatWrapper: this.wrapper });
    }
    const before = this.sequence.tokenMeter.usedOutputTokens;
    try {
      const r = await this.chat.generateResponse(history, { ...this.sampling, seed, signal: this.signal });
      return { text: r.response, stopReason: r.metadata.stopReason, tokens: this.sequence.tokenMeter.usedOutputTokens - before };
    } catch (err) {
      if (this.signal?.aborted) throw new CancelledError();
      throw err;
    }
  }
}
