import { readFileSync } from "node:fs";
import type { ChatHistoryItem, ChatWrapper, LlamaChatSession, LlamaContextSequence, LlamaGrammar, Llama, Token } from "node-llama-cpp";
import { CancelledError, NotFoundError, UsageError } from "../../core/errors.js";
import { ContextLengthError } from "../runtime/errors.js";
import { utf8Text } from "../../core/text.js";
import type { LoadedModel } from "./loader.js";
import type { TokenLogprob } from "../runtime/tokenLogprobs.js";
import type { LogitRows } from "./rows.js";
import { GeneratedLogprobs } from "./tokenLogprobs.js";
import { chatPromptTokens, completionInput, rawPromptTokens } from "./prompt.js";

/** Sampling settings shared by run, chat, serve and eval. Defaults follow llama.cpp's. */
export interface SamplingOptions {
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  minP?: number;
  repeatPenalty?: number;
  seed?: number;
  stop?: string[];
}

export const SAMPLING_DEFAULTS = { temperature: 0.8, topP: 0.95, topK: 40, minP: 0.05 } as const;

export interface GenerateOptions extends SamplingOptions {
  prompt: string;
  system?: string;
  /**
   * Earlier turns of the conversation, before `prompt` (serve's multi-turn requests). Replaces the
   * session's initial history, so `system` and the wrapper's default system prompt are not added.
   */
  history?: ChatHistoryItem[];
  /** Plain completion of the prompt, without the chat template; its control tokens are parsed as such. */
  raw?: boolean;
  /** A raw prompt's tokens from rawPromptTokens (serve's token-id prompts); `prompt` is then ignored. */
  tokens?: readonly Token[];
  /** A JSON schema the output must follow (grammar-constrained). */
  jsonSchema?: object;
  /** `tokens`: with logprobs, those whose text starts in this chunk. */
  onText?: (chunk: string, tokens?: TokenLogprob[]) => void;
  signal?: AbortSignal;
  /** Read each generated token's log-probability and `top` alternatives from `rows` (tokenLogprobs.ts). */
  logprobs?: { rows: LogitRows; top: number };
}

export interface GenerateTimings {
  loadMs: number;
  /** From the call until the first token of the answer (prompt processing included). */
  firstTokenMs: number;
  totalMs: number;
  /** Generation speed after the first token. */
  tokensPerSecond: number;
}

export interface GenerateResult {
  text: string;
  stopReason: string;
  /** The prompt's length as the model evaluates it (prompt.ts), whatever the sequence held before. */
  promptTokens: number;
  completionTokens: number;
  timings: GenerateTimings;
  /** With `logprobs`: one per token of `text`, in order. */
  tokens?: TokenLogprob[];
  /** The functions the model called (chat with tools): the answer's stop reason is then "toolCalls". */
  toolCalls?: { name: string; arguments: string }[];
}

export function readJsonSchema(file: string): object {
  let text: string;
  try {
    text = utf8Text(readFileSync(file));
  } catch {
    throw new NotFoundError(`JSON schema file not found: ${file}`);
  }
  try {
    const schema = JSON.parse(text) as unknown;
    if (typeof schema !== "object" || schema === null || Array.isArray(schema)) throw new Error("not an object");
    return schema;
  } catch (err) {
    throw new UsageError(`${file} is not a JSON schema object (${(err as Error).message}).`);
  }
}

export async function grammarFor(llama: Llama, schema: object | undefined): Promise<LlamaGrammar | undefined> {
  if (!schema) return undefined;
  try {
    return await llama.createGrammarForJsonSchema(schema as Parameters<Llama["createGrammarForJsonSchema"]>[0]);
  } catch (err) {
    throw new UsageError(`The JSON schema is not supported: ${(err as Error).message}`);
  }
}

/** node-llama-cpp's sampling options from ours: temperature 0 is greedy; repeat penalty 1 is off. */
export function samplingFor(o: SamplingOptions, contextSize: number) {
  return {
    maxTokens: o.maxTokens ?? contextSize,
    temperature: o.temperature ?? SAMPLING_DEFAULTS.temperature,
    topP: o.topP ?? SAMPLING_DEFAULTS.topP,
    topK: o.topK ?? SAMPLING_DEFAULTS.topK,
    minP: o.minP ?? SAMPLING_DEFAULTS.minP,
    seed: o.seed,
    repeatPenalty: o.repeatPenalty !== undefined && o.repeatPenalty !== 1 ? { penalty: o.repeatPenalty } : (false as const),
    customStopTriggers: o.stop && o.stop.length > 0 ? o.stop : undefined,
  };
}

/**
 * One generation on a sequence: chat-templated by default, plain completion with `raw`. The caller
 * owns the sequence (run uses a fresh one; serve hands out pooled ones).
 */
/**
 * A chat session on `sequence` whose history starts with `system`, or with nothing at all: left to itself,
 * node-llama-cpp puts its own stock system prompt in ("You are a helpful, respectful and honest
 * assistant…"), where llama.cpp and Ollama send only what the user gave and let the model's template add
 * its own default. Also used after a reset (`clearHistory`).
 */
export function openChatSession(Session: typeof LlamaChatSession, sequence: LlamaContextSequence, chatWrapper: ChatWrapper, system: string | undefined): LlamaChatSession {
  const session = new Session({ contextSequence: sequence, systemPrompt: system, autoDisposeSequence: false, chatWrapper });
  clearHistory(session, system);
  return session;
}

/** Back to the start of the conversation: the system message, or nothing (see openChatSession). */
export function clearHistory(session: LlamaChatSession, system: string | undefined): void {
  if (system === undefined) session.setChatHistory([]);
  else session.resetChatHistory();
}

export async function generateOn(loaded: LoadedModel, sequence: LlamaContextSequence, o: GenerateOptions): Promise<GenerateResult> {
  const { LlamaChatSession, LlamaCompletion } = await import("node-llama-cpp");
  const grammar = await grammarFor(loaded.llama, o.jsonSchema);
  const sampling = samplingFor(o, loaded.context.contextSize);
  const started = performance.now();
  let firstAt: number | undefined;
  const logprobs = o.logprobs && new GeneratedLogprobs(loaded, sequence, o.logprobs.rows, o.logprobs.top);
  const onTextChunk = (chunk: string) => {
    firstAt ??= performance.now();
    o.onText?.(chunk, logprobs?.take());
  };
  const onToken = logprobs && ((tokens: Token[]) => logprobs.release(tokens));
  // The meter's output count is one per sampled token: the generated tokens, an end token included.
  const outputBefore = sequence.tokenMeter.usedOutputTokens;
  let text: string;
  let stopReason: string;
  let promptTokens: number;
  try {
    if (o.raw) {
      const tokens = o.tokens ?? rawPromptTokens(loaded.model, o.prompt);
      promptTokens = tokens.length;
      refuseLongPrompt(loaded, promptTokens);
      const completion = new LlamaCompletion({ contextSequence: sequence });
      const r = await completion.generateCompletionWithMeta(completionInput(loaded.model, tokens), { ...sampling, grammar, onTextChunk, onToken, signal: o.signal, stopOnAbortSignal: true });
      text = r.response;
      stopReason = r.metadata.stopReason;
    } else {
      const wrapper = await loaded.chatWrapper();
      const session = openChatSession(LlamaChatSession, sequence, wrapper, o.system);
      if (o.history) session.setChatHistory(o.history);
      promptTokens = chatPromptTokens(loaded.model, wrapper, session.getChatHistory(), o.prompt).length;
      refuseLongPrompt(loaded, promptTokens);
      const r = await session.promptWithMeta(o.prompt, { ...sampling, grammar, onTextChunk, onToken, signal: o.signal, stopOnAbortSignal: true });
      text = r.responseText;
      stopReason = r.stopReason;
      session.dispose({ disposeSequence: false });
    }
  } catch (err) {
    if (o.signal?.aborted) throw new CancelledError();
    throw err;
  } finally {
    logprobs?.stop();
  }
  const tokens = logprobs?.finish(stopReason);
  const rest = tokens && logprobs!.notHandedOut(tokens);
  if (rest && rest.length > 0) o.onText?.("", rest);
  const ended = performance.now();
  const completionTokens = sequence.tokenMeter.usedOutputTokens - outputBefore;
  const genMs = firstAt !== undefined ? ended - firstAt : 0;
  return {
    text,
    stopReason,
    promptTokens,
    completionTokens,
    timings: {
      loadMs: loaded.loadMs,
      firstTokenMs: Math.round((firstAt ?? ended) - started),
      totalMs: Math.round(ended - started),
      tokensPerSecond: genMs > 0 && completionTokens > 1 ? ((completionTokens - 1) * 1000) / genMs : 0,
    },
    ...(tokens && { tokens }),
  };
}

/**
 * A prompt that leaves no room for an answer is refused: node-llama-cpp would otherwise cut the
 * conversation (or shift the context) to make room and answer a prompt the user did not write.
 */
function refuseLongPrompt(loaded: LoadedModel, promptTokens: number): void {
  const size = loaded.context.contextSize;
  if (promptTokens < size) return;
  const trained = loaded.summary.contextLength;
  const hint = trained && size >= trained ? `Shorten the prompt: ${loaded.entry.name} was trained on ${trained} tokens.` : `Give a larger --ctx${trained ? ` (up to ${trained}, what ${loaded.entry.name} was trained on)` : ""}, or shorten the prompt.`;
  throw new ContextLengthError(promptTokens, size, undefined, hint);
}

/** A one-shot generation on a fresh sequence of the loaded context. */
export async function generate(loaded: LoadedModel, o: GenerateOptions): Promise<GenerateResult> {
  const sequence = loaded.context.getSequence();
  try {
    return await generateOn(loaded, sequence, o);
  } finally {
    sequence.dispose();
  }
}
