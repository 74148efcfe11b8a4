import { CancelledError, UsageError } from "../../core/errors.js";
import { type EventSink, emit } from "../../core/events.js";
import type { GenerateResult } from "../llama/generate.js";
import { ContextLengthError } from "../runtime/errors.js";
import type { ChatTurn, GenerationSlot, RuntimeGenerateOptions } from "../runtime/types.js";
import { Sampler, resolveSampling } from "./sampling.js";
import { KvCache, type OnnxSession } from "./session.js";
import { StopTextStream } from "./stops.js";
import { AnswerTokens } from "../runtime/answerTokens.js";
import type { PromptTokenLogprob } from "../runtime/tokenLogprobs.js";
import { logNormalizer, promptLogprob, sampledLogprob } from "./logprobs.js";
import type { ChatTemplate } from "./template.js";
import type { OnnxTokenizer } from "./tokenizer.js";

/** What the slots of one loaded model share. */
export interface ModelParts {
  name: string;
  session: OnnxSession;
  tokenizer: OnnxTokenizer;
  template: ChatTemplate | undefined;
  eos: ReadonlySet<number>;
  contextSize: number;
  /** Set when the context cannot grow (the graph takes no positions past it): the hint of a too-long prompt. */
  contextLimitHint?: string;
  /** Tokens per call while processing a prompt. */
  batchSize: number;
  vocabSize: number;
  loadMs: number;
  /** Where warnings about a generation go (the load's sink): e.g. a system prompt the template leaves out. */
  onEvent?: EventSink;
  /** Set once the model has warned that its chat template leaves out the system prompt (said once per model). */
  systemDropWarned?: boolean;
}

export function noChatTemplate(name: string): UsageError {
  return new UsageError(`${name} has no chat template (neither chat_template.jinja nor chat_template in tokenizer_config.json).`, { hint: "Use a plain completion (--raw), or add the template to the model folder." });
}

/** The conversation rendered with the chat template and tokenized (special-token text parsed, nothing added). */
export function chatTokens(parts: ModelParts, messages: readonly ChatTurn[]): number[] {
  if (!parts.template) throw noChatTemplate(parts.name);
  const text = parts.template.render(messages);
  if (!parts.systemDropWarned && dropsSystem(parts.template, messages, text)) {
    parts.systemDropWarned = true;
    emit(parts.onEvent, { type: "log", level: "warn", message: `${parts.name}'s chat template leaves out the system prompt: the model answers as if none were given.` });
  }
  return parts.tokenizer.encode(text, true);
}

/**
 * Whether the template renders the conversation the same with its system turn as without it: some
 * templates (tiny-arith's) skip system messages, as transformers then does. llama.cpp's runtime folds
 * the system prompt in instead, so the same -s gives different answers on the two runtimes; say so.
 */
function dropsSystem(template: ChatTemplate, messages: readonly ChatTurn[], rendered: string): boolean {
  if (!messages.some((m) => m.role === "system" && m.content.trim() !== "")) return false;
  try {
    return template.render(messages.filter((m) => m.role !== "system")) === rendered;
  } catch {
    // A template that refuses a conversation without a system turn clearly uses it.
    return false;
  }
}

/**
 * A raw prompt's tokens as the llama.cpp runtime makes them (llama/prompt.ts): the tokenizer's leading
 * tokens (BOS) and the text with special-token text parsed; token ids as given, BOS put in front when
 * the model adds one and they lack it.
 */
export function rawTokens(parts: ModelParts, o: Pick<RuntimeGenerateOptions, "prompt" | "tokens">): number[] {
  const { tokenizer } = parts;
  if (o.tokens) {
    o.tokens.forEach((t, i) => {
      if (!Number.isInteger(t) || t < 0 || t >= parts.vocabSize) throw new UsageError(`Token id ${t} at position ${i} is not in the model's vocabulary (0–${parts.vocabSize - 1}).`);
    });
    const bos = tokenizer.bos;
    return bos === undefined || o.tokens[0] === bos ? [...o.tokens] : [bos, ...o.tokens];
  }
  return tokenizer.encodeWithLeading(o.prompt ?? "", true);
}

function lastRow(r: { logits: Float32Array; rows: number; vocab: number }): Float32Array {
  return r.logits.subarray((r.rows - 1) * r.vocab, r.rows * r.vocab);
}

/** log p(target) from one row of logits, in float64 (a log-softmax over the whole vocabulary). */
export function logProb(row: Float32Array, target: number): number {
  return row[target]! - logNormalizer(row);
}

export class OnnxSlot implements GenerationSlot {
  readonly cache = new KvCache();
  private disposed = false;

  constructor(
    private readonly parts: ModelParts,
    private readonly onDispose: () => void = () => {},
  ) {}

  /**
   * Brings the cache to hold `tokens` and returns the logits after the last one. The part that the cache
   * already holds (a conversation's earlier turns, a shared few-shot prefix) is not evaluated again.
   */
  async prefill(tokens: readonly number[], signal?: AbortSignal): Promise<Float32Array> {
    const { session, contextSize, batchSize } = this.parts;
    if (tokens.length === 0) throw new UsageError("The prompt is empty: there is nothing to evaluate.");
    if (tokens.length > contextSize) throw new ContextLengthError(tokens.length, contextSize, undefined, this.parts.contextLimitHint);
    let common = 0;
    const held = this.cache.tokens;
    while (common < held.length && common < tokens.length && held[common] === tokens[common]) common++;
    // The last prompt token must be evaluated again: its logits give the first answer token.
    if (common === tokens.length) common--;
    session.truncate(this.cache, common);
    let row: Float32Array | undefined;
    for (let at = common; at < tokens.length; at += batchSize) {
      if (signal?.aborted) throw new CancelledError();
      const last = at + batchSize >= tokens.length;
      const r = await session.forward(this.cache, tokens.slice(at, at + batchSize), last ? "last" : "none");
      if (last) row = lastRow(r);
    }
    return row!;
  }

  promptTokens(o: RuntimeGenerateOptions): number[] {
    if (o.jsonSchema) throw new UsageError("JSON schema output is not supported on ONNX models.", { hint: "Use the model's GGUF build for --json-schema." });
    return o.messages ? chatTokens(this.parts, o.messages) : rawTokens(this.parts, o);
  }

  async generate(o: RuntimeGenerateOptions): Promise<GenerateResult> {
    const { session, tokenizer, eos, contextSize, loadMs } = this.parts;
    const prompt = this.promptTokens(o);
    // Room for at least one answer token, as the llama.cpp runtime asks.
    if (prompt.length >= contextSize) throw new ContextLengthError(prompt.length, contextSize, undefined, this.parts.contextLimitHint);
    const started = performance.now();
    let row = await this.prefill(prompt, o.signal);
    const sampler = new Sampler(resolveSampling(o), tokenizer.newline === undefined ? new Set() : new Set([tokenizer.newline]));
    const maxTokens = o.maxTokens ?? contextSize;
    const stream = new StopTextStream(o.stop ?? []);
    const generated: number[] = [];
    let sampled = 0;
    let firstAt: number | undefined;
    let stopReason = "maxTokens";
    const answer = o.logprobs && new AnswerTokens((t) => tokenizer.decode(t), (t) => eos.has(t));
    let emitted = 0;
    const send = (chunk: string) => {
      emitted += chunk.length;
      if (chunk) o.onText?.(chunk, answer?.upTo(emitted));
    };
    try {
      for (;;) {
        if (o.signal?.aborted) {
          // As node-llama-cpp with stopOnAbortSignal: a partial answer is returned, none is an error.
          if (generated.length === 0) throw new CancelledError();
          stopReason = "abort";
          break;
        }
        if (sampled >= maxTokens) break;
        const token = sampler.sample(row, generated);
        if (answer) answer.push(sampledLogprob(tokenizer, row, token, o.logprobs!.top));
        sampled++;
        firstAt ??= performance.now();
        if (eos.has(token)) {
          stopReason = "eogToken";
          break;
        }
        generated.push(token);
        send(stream.update(tokenizer.decode(generated)));
        if (stream.stopped) {
          stopReason = "customStopTrigger";
          break;
        }
        if (this.cache.length >= contextSize) break;
        row = lastRow(await session.forward(this.cache, [token]));
      }
    } catch (err) {
      // A failed call leaves the cache in an unknown state.
      if (!(err instanceof CancelledError)) await this.clear();
      throw err;
    }
    send(stream.finish());
    const tokens = answer?.finish(stream.finalText, stopReason);
    const rest = tokens && answer!.notHandedOut(tokens);
    if (rest && rest.length > 0) o.onText?.("", rest);
    const ended = performance.now();
    const genMs = firstAt !== undefined ? ended - firstAt : 0;
    return {
      text: stream.finalText,
      stopReason,
      promptTokens: prompt.length,
      completionTokens: sampled,
      timings: {
        loadMs,
        firstTokenMs: Math.round((firstAt ?? ended) - started),
        totalMs: Math.round(ended - started),
        tokensPerSecond: genMs > 0 && sampled > 1 ? ((sampled - 1) * 1000) / genMs : 0,
      },
      ...(tokens && { tokens }),
    };
  }

  /** Every prompt row is fetched (in batches), each giving the next prompt token's log-probability. */
  async promptLogprobs(tokens: readonly number[], top: number, signal?: AbortSignal): Promise<PromptTokenLogprob[]> {
    const { session, tokenizer, contextSize, batchSize } = this.parts;
    if (tokens.length > contextSize) throw new ContextLengthError(tokens.length, contextSize, undefined, this.parts.contextLimitHint);
    session.truncate(this.cache, 0);
    const out: PromptTokenLogprob[] = [promptLogprob(tokenizer, undefined, tokens[0]!, top)];
    for (let at = 0; at < tokens.length; at += batchSize) {
      if (signal?.aborted) throw new CancelledError();
      const r = await session.forward(this.cache, tokens.slice(at, at + batchSize), "all");
      for (let i = 0; i < r.rows && at + i + 1 < tokens.length; i++) out.push(promptLogprob(tokenizer, r.logits.subarray(i * r.vocab, (i + 1) * r.vocab), tokens[at + i + 1]!, top));
    }
    return out;
  }

  async logLikelihoods(prompt: readonly number[], continuations: readonly (readonly number[])[], signal?: AbortSignal): Promise<number[]> {
    if (prompt.length === 0) throw new UsageError("Log-likelihoods need a prompt of at least one token.");
    if (continuations.some((c) => c.length === 0)) throw new UsageError("Each continuation needs at least one token.");
    // The prompt is evaluated once: its last row scores every continuation's first token, and a longer
    // continuation goes on from the prompt's cache (cut back to the prompt after the one before).
    const first = await this.prefill(prompt, signal);
    const out: number[] = [];
    for (const continuation of continuations) {
      if (signal?.aborted) throw new CancelledError();
      let sum = logProb(first, continuation[0]!);
      if (continuation.length > 1) {
        this.parts.session.truncate(this.cache, prompt.length);
        const r = await this.parts.session.forward(this.cache, continuation.slice(0, -1));
        for (let i = 1; i < continuation.length; i++) sum += logProb(r.logits.subarray((i - 1) * r.vocab, i * r.vocab), continuation[i]!);
      }
      out.push(sum);
    }
    return out;
  }

  async clear(): Promise<void> {
    this.parts.session.truncate(this.cache, 0);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.cache.tensors = {};
    this.cache.tokens = [];
    this.onDispose();
  }
}
