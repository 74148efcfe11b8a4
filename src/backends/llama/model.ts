import type { LlamaContextSequence, LlamaEmbeddingContext, Token } from "node-llama-cpp";
import type { BackendContext } from "../../core/events.js";
import { CancelledError, UsageError } from "../../core/errors.js";
import type { PerplexityResult } from "../eval/perplexity.js";
import { ContextLengthError, EmbeddingsUnavailableError } from "../runtime/errors.js";
import type { ChatTurn, GenerationSlot, RuntimeBenchOptions, RuntimeGenerateOptions, RuntimeLoadOptions, RuntimeModel, ToolDefinition } from "../runtime/types.js";
import type { ModelEntry } from "../store/types.js";
import { SequenceAnswerer } from "./answer.js";
import { type BenchResult, backendName, benchLoaded } from "./bench.js";
import { ChatEngine, type ChatEngineApi, type ChatEngineOptions } from "./chat.js";
import { type GenerateOptions, type GenerateResult, generateOn, samplingFor } from "./generate.js";
import { continuationLogLikelihoods } from "./likelihood.js";
import { nativeRowsFor, prepareNativeRows } from "./native/probe.js";
import { type LoadedModel, loadModel } from "./loader.js";
import type { LoraSpec } from "./lora.js";
import { rawPromptTokens } from "./prompt.js";
import { type LogitRows, logitRowsFor } from "./rows.js";
import { promptLogprobs } from "./tokenLogprobs.js";
import { tokenBytes } from "./tokenBytes.js";
import type { PromptTokenLogprob } from "../runtime/tokenLogprobs.js";
import { chatHistoryOf, generateWithTools, hasToolSyntax, toolPromptTokens } from "./tools.js";

/**
 * llama.cpp (node-llama-cpp) behind the runtime interface: a thin layer over the loader, generation,
 * chat, scoring and bench code in this folder, which keeps doing the work.
 */

/** Tools offered, or tool calls in the conversation: node-llama-cpp's function-calling path (tools.ts). */
const usesTools = (o: RuntimeGenerateOptions) => o.tools !== undefined || (o.messages?.some((m) => m.toolCalls && m.toolCalls.length > 0) ?? false);

/**
 * generateOn's options for a chat or raw request. A conversation's earlier turns (a system message
 * included) become the session's history, which then holds exactly what was given (no stock system
 * prompt); the last turn, the user's, is the prompt.
 */
function generateOptions(o: RuntimeGenerateOptions): GenerateOptions {
  const { messages, prompt, tokens, lean: _lean, logprobs: _logprobs, ...rest } = o;
  if (!messages) return { ...rest, raw: true, prompt: prompt ?? "", tokens: tokens as readonly Token[] | undefined };
  const last = messages[messages.length - 1];
  if (!last || last.role !== "user") throw new UsageError("A conversation to answer must end with a user message.");
  const earlier = messages.slice(0, -1);
  return { ...rest, prompt: last.content, history: earlier.length > 0 ? chatHistoryOf(earlier) : undefined };
}

class LlamaSlot implements GenerationSlot {
  /** The answerer of lean generations, kept while the sampling stays the same (one per eval task). */
  private answerer?: { key: string; signal?: AbortSignal; answerer: SequenceAnswerer };
  /** The reader of log-probabilities, made on the first request for them. */
  private rows?: LogitRows;

  constructor(
    private readonly loaded: LoadedModel,
    readonly sequence: LlamaContextSequence,
  ) {}

  async generate(o: RuntimeGenerateOptions): Promise<GenerateResult> {
    if (usesTools(o)) return generateWithTools(this.loaded, this.sequence, o);
    if (o.lean && o.messages && !o.onText && !o.jsonSchema && !o.logprobs) return this.answer(o, o.messages);
    const logprobs = o.logprobs && { rows: this.rowsOf(), top: o.logprobs.top };
    return generateOn(this.loaded, this.sequence, { ...generateOptions(o), logprobs });
  }

  promptLogprobs(tokens: readonly number[], top: number, signal?: AbortSignal): Promise<PromptTokenLogprob[]> {
    return promptLogprobs(this.loaded, this.sequence, this.rowsOf(), tokens, top, signal);
  }

  private rowsOf(): LogitRows {
    return (this.rows ??= logitRowsFor(this.loaded));
  }

  /** eval's path: a plain token loop on the sequence, reusing what it holds of the prompt (answer.ts). */
  private async answer(o: RuntimeGenerateOptions, messages: readonly ChatTurn[]): Promise<GenerateResult> {
    const sampling = samplingFor(o, this.loaded.context.contextSize);
    const key = JSON.stringify({ ...sampling, seed: undefined });
    if (this.answerer?.key !== key || this.answerer.signal !== o.signal) {
      this.answerer = { key, signal: o.signal, answerer: new SequenceAnswerer(this.loaded, this.sequence, await this.loaded.chatWrapper(), sampling, o.signal) };
    }
    const started = performance.now();
    const a = await this.answerer.answerer.answer(chatHistoryOf(messages), o.seed);
    const totalMs = performance.now() - started;
    return {
      text: a.text,
      stopReason: a.stopReason,
      promptTokens: a.promptTokens,
      completionTokens: a.tokens,
      timings: { loadMs: this.loaded.loadMs, firstTokenMs: Math.round(totalMs), totalMs: Math.round(totalMs), tokensPerSecond: totalMs > 0 ? (a.tokens * 1000) / totalMs : 0 },
    };
  }

  logLikelihoods(prompt: readonly number[], continuations: readonly (readonly number[])[], signal?: AbortSignal): Promise<number[]> {
    return continuationLogLikelihoods(this.sequence, prompt as readonly Token[], continuations as readonly (readonly Token[])[], signal, nativeRowsFor(this.loaded, this.sequence.context));
  }

  async clear(): Promise<void> {
    await this.sequence.clearHistory();
  }

  dispose(): void {
    this.rows?.dispose();
    this.sequence.dispose();
  }
}

class LlamaRuntimeModel implements RuntimeModel {
  readonly runtime = "llama.cpp" as const;
  private embedding?: Promise<LlamaEmbeddingContext>;

  constructor(readonly loaded: LoadedModel) {}

  get entry(): ModelEntry {
    return this.loaded.entry;
  }
  get description(): string {
    return this.loaded.model.typeDescription;
  }
  get loadMs(): number {
    return this.loaded.loadMs;
  }
  get contextSize(): number {
    return this.loaded.context.contextSize;
  }
  get threads(): number {
    return this.loaded.settings.threads;
  }
  get sequences(): number {
    return this.loaded.context.totalSequences;
  }
  get backend(): string {
    return backendName(this.loaded.llama.gpu);
  }
  get vocabSize(): number {
    return this.loaded.summary.vocabSize ?? 0;
  }
  get adapters(): LoraSpec[] {
    return this.loaded.adapters;
  }

  tokenize(text: string, o: { special?: boolean; bos?: boolean } = {}): number[] {
    if (o.bos) return rawPromptTokens(this.loaded.model, text, undefined, o.special ?? false);
    return this.loaded.model.tokenize(text, o.special ?? false);
  }

  detokenize(tokens: readonly number[], o: { special?: boolean } = {}): string {
    return this.loaded.model.detokenize(tokens as readonly Token[], o.special ?? false);
  }

  tokenBytes(token: number): number[] {
    return tokenBytes(this.loaded.model, token);
  }

  tokenizerInfo(): { bos: number | null; eos: number | null; chatTemplate: string | null } {
    const { model } = this.loaded;
    const template = model.fileInfo.metadata?.tokenizer?.chat_template;
    return { bos: model.tokens.bos, eos: model.tokens.eos, chatTemplate: typeof template === "string" ? template : null };
  }

  async chatPrompt(messages: readonly ChatTurn[], tools?: readonly ToolDefinition[]): Promise<number[]> {
    if (tools || usesTools({ messages: [...messages] })) return toolPromptTokens(this.loaded, messages, tools);
    const wrapper = await this.loaded.chatWrapper();
    const { contextText } = wrapper.generateContextState({ chatHistory: [...chatHistoryOf(messages), { type: "model", response: [] }] });
    return contextText.tokenize(this.loaded.model.tokenizer);
  }

  async toolSyntax(): Promise<boolean> {
    return hasToolSyntax(await this.loaded.chatWrapper());
  }

  async warmUp(): Promise<void> {
    await this.loaded.chatWrapper();
  }

  async prepareLogprobs(ctx: BackendContext = {}): Promise<void> {
    await prepareNativeRows(this.loaded, ctx);
  }

  async openSlot(): Promise<GenerationSlot> {
    return new LlamaSlot(this.loaded, this.loaded.context.getSequence());
  }

  async generate(o: RuntimeGenerateOptions): Promise<GenerateResult> {
    const slot = await this.openSlot();
    try {
      return await slot.generate(o);
    } finally {
      slot.dispose();
    }
  }

  openChat(o: ChatEngineOptions): Promise<ChatEngineApi> {
    return ChatEngine.create(this.loaded, o);
  }

  async perplexity(text: string, o: { ctxSize: number; batchSize?: number; label?: string }, ctx: BackendContext = {}): Promise<PerplexityResult> {
    const { perplexityOf } = await import("../eval/perplexity.js");
    return perplexityOf(this.loaded, text, o.ctxSize, o.batchSize, ctx, o.label);
  }

  /** From a second, embedding-only context of the same model, created on first use. */
  async embed(inputs: string[], signal?: AbortSignal): Promise<{ vectors: number[][]; tokens: number }> {
    const { model, context, settings, entry } = this.loaded;
    this.embedding ??= model.createEmbeddingContext({ contextSize: context.contextSize, threads: settings.threads }).catch((err: unknown) => {
      this.embedding = undefined;
      throw new EmbeddingsUnavailableError(`${entry.name} cannot compute embeddings: ${(err as Error).message}`);
    });
    const ec = await this.embedding;
    let tokens = 0;
    inputs.forEach((text, i) => {
      const n = ec.calculateInputLength(text);
      if (n >= context.contextSize) throw new ContextLengthError(n, context.contextSize, `input[${i}]`);
      tokens += n;
    });
    const vectors: number[][] = [];
    for (const text of inputs) {
      if (signal?.aborted) throw new CancelledError();
      vectors.push([...(await ec.getEmbeddingFor(text)).vector]);
    }
    return { vectors, tokens };
  }

  bench(o: RuntimeBenchOptions, ctx: BackendContext = {}): Promise<BenchResult> {
    return benchLoaded(this.loaded, o, ctx);
  }

  async dispose(): Promise<void> {
    const ec = await this.embedding?.catch(() => undefined);
    await ec?.dispose().catch(() => undefined);
    await this.loaded.dispose();
  }
}

/** Loads a GGUF model (loader.ts does the checks and the settings) as a RuntimeModel. */
export async function loadLlamaModel(entry: ModelEntry, o: RuntimeLoadOptions, ctx: BackendContext = {}): Promise<RuntimeModel> {
  const { dtype: _dtype, ...load } = o;
  return new LlamaRuntimeModel(await loadModel(entry, load, ctx));
}
