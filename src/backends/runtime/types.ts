import type { BackendContext } from "../../core/events.js";
import type { ChatEngineApi, ChatEngineOptions } from "../llama/chat.js";
import type { BenchApi, BenchResult } from "../llama/bench.js";
import type { GenerateResult, SamplingOptions } from "../llama/generate.js";
import type { LoraSpec } from "../llama/lora.js";
import type { GpuChoice } from "../llama/runtime.js";
import type { PerplexityResult } from "../eval/perplexity.js";
import type { OnnxDtype } from "../onnx/layout.js";
import type { ModelEntry } from "../store/types.js";
import type { PromptTokenLogprob, TokenLogprob } from "./tokenLogprobs.js";

/**
 * The runtimes slm runs models on, behind one interface: llama.cpp (node-llama-cpp) for GGUF files and
 * onnxruntime for ONNX folders. Commands and the eval/serve backends take a RuntimeModel from
 * `loadRuntimeModel` (runtime/load.ts), which picks the runtime by the entry's format; nothing outside
 * src/backends/llama/ and src/backends/onnx/ imports either runtime's library.
 */
export type RuntimeName = "llama.cpp" | "onnxruntime";

/** One message of a conversation, in the runtime-neutral shape (no node-llama-cpp types here). */
export interface ChatTurn {
  role: "system" | "user" | "assistant";
  content: string;
  /** An assistant turn's tool calls, each with the tool's answer once the client sent it (serve). */
  toolCalls?: TurnToolCall[];
}

/** A call the model made, as OpenAI's clients send it back: `arguments` is JSON text. */
export interface TurnToolCall {
  id: string;
  name: string;
  arguments: string;
  /** The `role: "tool"` message's content for this call. */
  result?: string;
}

/** A function the model may call (OpenAI's `tools[].function`); `parameters` is a JSON schema. */
export interface ToolDefinition {
  name: string;
  description?: string;
  parameters?: object;
}

/** The tools of one generation and how they may be used (serve's `tools`, `tool_choice`, `parallel_tool_calls`). */
export interface ToolOptions {
  tools: ToolDefinition[];
  /** "auto": the model decides; "required": it calls one of them; `{name}`: it calls that one. */
  choice: "auto" | "required" | { name: string };
  /** More than one call in one answer. */
  parallel: boolean;
}

/** A piece of a tool call as it is generated: its index in the answer, the function's name, more of its arguments. */
export interface ToolCallChunk {
  index: number;
  name: string;
  arguments: string;
}

export interface RuntimeLoadOptions {
  contextSize?: number;
  /** Cap the context at the model's training context when --ctx is not given (run, chat). */
  capContextAtTraining?: boolean;
  threads?: number;
  batchSize?: number;
  gpu?: GpuChoice;
  /** Extra LoRA adapters (llama.cpp only: an ONNX model refuses them, pointing at `slm export` of the merged fine-tune). */
  lora?: LoraSpec[];
  /** Slots that generate at once (serve --parallel, eval --parallel). */
  sequences?: number;
  /**
   * llama.cpp: the KV cache's element type (default f16, as llama.cpp's). f32, with flashAttention off,
   * makes llama.cpp's logits comparable with another runtime's to ~1e-5 (test/e2e/onnxParity.test.ts).
   * ONNX models keep their cache in the graph's own type and ignore both.
   */
  kvCacheType?: "f16" | "f32";
  /** llama.cpp: flash attention on, off, or llama.cpp's choice (default "auto"). */
  flashAttention?: boolean | "auto";
  /** ONNX: which variant to load; else the entry's `dtype` (from `NAME:q4`), else the default rule (onnx/layout.ts). */
  dtype?: OnnxDtype;
  verbose?: boolean;
  /**
   * The caller renders chat messages (run without --raw, chat): a model that cannot (an ONNX folder
   * without a chat template) is refused before it loads. llama.cpp has fallback templates and ignores it.
   */
  chat?: boolean;
}

/** What one generation is asked to do: a chat conversation, or a raw completion of text or token ids. */
export interface RuntimeGenerateOptions extends SamplingOptions {
  /** Chat: the conversation, ending with the user's message; rendered with the model's chat template. */
  messages?: ChatTurn[];
  /** Raw completion (no template): the text, its control tokens parsed as such… */
  prompt?: string;
  /** …or its token ids as the model evaluates them, BOS included (`tokenize(text, {special: true, bos: true})`). */
  tokens?: readonly number[];
  /** A JSON schema the output must follow; a runtime that cannot constrain output refuses it (UsageError). */
  jsonSchema?: object;
  /** Functions the model may call (chat only); a runtime or model without a tool syntax refuses them (UsageError). */
  tools?: ToolOptions;
  /** `tokens`: with `logprobs`, the tokens whose text starts in this chunk. */
  onText?: (chunk: string, tokens?: TokenLogprob[]) => void;
  /** Streams tool calls as they are generated. */
  onToolCall?: (chunk: ToolCallChunk) => void;
  signal?: AbortSignal;
  /**
   * One of many independent answers to chat `messages` (eval): nothing is streamed, and the runtime may
   * take a leaner path than its interactive one with the same answers (llama.cpp: a plain token loop on
   * the slot instead of a chat session). Timings are then those of the whole answer.
   */
  lean?: boolean;
  /**
   * Each generated token's log-probability and its `top` most likely alternatives (0–20), in
   * GenerateResult.tokens and with each onText chunk; only a slot that has `promptLogprobs` honours it.
   */
  logprobs?: { top: number };
}

/**
 * One lane of generation with its own state (llama.cpp: a context sequence; ONNX: a KV cache). A slot is
 * used by one request at a time and may keep its state between uses to reuse a shared prefix.
 */
export interface GenerationSlot {
  generate(o: RuntimeGenerateOptions): Promise<GenerateResult>;
  /**
   * Summed log-probability of each continuation's tokens after `prompt` (at least one token), with the
   * full distribution (temperature 1, no cut): multiple-choice scoring, lm-evaluation-harness's way.
   */
  logLikelihoods(prompt: readonly number[], continuations: readonly (readonly number[])[], signal?: AbortSignal): Promise<number[]>;
  /**
   * The log-probability of each of `tokens` after those before it (the first: null), with the `top` most
   * likely tokens at each position (serve's `echo`). Absent where the runtime cannot read
   * log-probabilities; a slot that has it also honours RuntimeGenerateOptions.logprobs.
   */
  promptLogprobs?(tokens: readonly number[], top: number, signal?: AbortSignal): Promise<PromptTokenLogprob[]>;
  /** Forgets the slot's state (after a failure mid-generation). */
  clear(): Promise<void>;
  dispose(): void;
}

export interface RuntimeBenchOptions {
  promptTokens: number;
  genTokens: number;
  repetitions: number;
  /** llama.cpp only: how tokens reach llama_decode (bench --api); other runtimes ignore it. */
  api?: BenchApi;
}

export interface RuntimeModel {
  readonly runtime: RuntimeName;
  readonly entry: ModelEntry;
  /** A few words on what is loaded: "llama 256M Q8_0", "onnx q4 (model_q4.onnx)". */
  readonly description: string;
  readonly loadMs: number;
  /** Tokens per slot. */
  readonly contextSize: number;
  readonly threads: number;
  /** Slots that may generate at once. A slot's generate throws ContextLengthError (runtime/errors.ts) for a prompt that does not fit. */
  readonly sequences: number;
  /** "CPU", "CUDA", "Vulkan", "Metal"… */
  readonly backend: string;
  readonly vocabSize: number;
  readonly adapters: LoraSpec[];
  /** ONNX only: the variant loaded. */
  readonly dtype?: OnnxDtype;

  /**
   * `special`: control tokens written in the text (`<|user|>`, `</s>`) become those tokens. `bos`: the
   * token the model starts every prompt with (BOS), when it uses one, goes in front: a raw prompt's
   * tokens as the model evaluates them (so `tokenize("", {bos: true})` is `[bos]` or `[]`).
   */
  tokenize(text: string, o?: { special?: boolean; bos?: boolean }): number[];
  /** `special`: control tokens written out (`<|user|>`); by default they are left out, as in generated text. */
  detokenize(tokens: readonly number[], o?: { special?: boolean }): string;
  /** A token's own bytes (a byte token's text alone is U+FFFD), where the runtime knows them. */
  tokenBytes?(token: number): number[];
  /** The tokenizer's BOS and EOS tokens and the model's Jinja chat template, where the runtime knows them (serve's /tokenizer_info). */
  tokenizerInfo?(): { bos: number | null; eos: number | null; chatTemplate: string | null };
  /** The conversation rendered with the model's chat template and tokenized, ending where the assistant's reply begins. */
  chatPrompt(messages: readonly ChatTurn[], tools?: readonly ToolDefinition[]): Promise<number[]>;
  /** Whether the model's chat template has a syntax for tool calls (absent: it has none). */
  toolSyntax?(): Promise<boolean>;

  /** A new slot; the caller disposes it. At most `sequences` are open at once. */
  openSlot(): Promise<GenerationSlot>;
  /** One generation on a fresh slot. */
  generate(o: RuntimeGenerateOptions): Promise<GenerateResult>;
  /** A conversation kept between turns (slm chat). */
  openChat(o: ChatEngineOptions): Promise<ChatEngineApi>;
  /** llama-perplexity's method: chunks of ctxSize tokens, the second half of each scored. */
  perplexity(text: string, o: { ctxSize: number; batchSize?: number; label?: string }, ctx?: BackendContext): Promise<PerplexityResult>;
  /**
   * Prepares what the first generation would otherwise pay for (llama.cpp: resolving the chat template,
   * ~0.5 s), so a server's first request does not wait for it.
   */
  warmUp?(): Promise<void>;
  /**
   * Makes log-probabilities (logLikelihoods, scoring) take the fastest exact reader: llama.cpp builds or
   * loads slm's addon and probes it (once per process and model); logs once when it cannot.
   */
  prepareLogprobs?(ctx?: BackendContext): Promise<void>;
  /**
   * Sentence embeddings, where the model has them; absent otherwise. Throws EmbeddingsUnavailableError
   * when the model cannot embed after all, ContextLengthError for an input longer than the context.
   */
  embed?(inputs: string[], signal?: AbortSignal): Promise<{ vectors: number[][]; tokens: number }>;
  /** Prompt processing and generation speed, llama-bench's pp/tg tests. */
  bench(o: RuntimeBenchOptions, ctx?: BackendContext): Promise<BenchResult>;
  dispose(): Promise<void>;
}
