import type { ChatEngineApi, ChatEngineOptions, ChatMessage, ChatReply, ChatTranscript, ContextUsage, SendOptions } from "../llama/chat.js";
import type { ChatTurn } from "../runtime/types.js";
import { type ModelParts, OnnxSlot, chatTokens } from "./slot.js";

/**
 * `slm chat` on an ONNX model: the conversation kept as messages and re-rendered with the chat template
 * each turn; the slot's KV cache keeps the earlier turns, so each answer evaluates only what is new.
 */
export class OnnxChatEngine implements ChatEngineApi {
  private messages: ChatMessage[] = [];
  private systemPrompt: string | undefined;
  /** After reset/load the cache still holds the old conversation until the next answer. */
  private stale = true;

  constructor(
    private readonly parts: ModelParts,
    private readonly slot: OnnxSlot,
    private readonly o: ChatEngineOptions = {},
  ) {
    this.systemPrompt = o.system;
  }

  get system(): string | undefined {
    return this.systemPrompt;
  }

  private turns(extra: ChatMessage[] = []): ChatTurn[] {
    const all: ChatTurn[] = [...this.messages, ...extra];
    return this.systemPrompt !== undefined ? [{ role: "system", content: this.systemPrompt }, ...all] : all;
  }

  async send(text: string, o: SendOptions = {}): Promise<ChatReply> {
    const { system: _system, ...sampling } = this.o;
    const user: ChatMessage = { role: "user", content: text };
    const r = await this.slot.generate({ ...sampling, messages: this.turns([user]), onText: o.onText, signal: o.signal });
    // An aborted answer stays in the history with what it had, as the llama.cpp engine keeps it.
    this.messages.push(user, { role: "assistant", content: r.text });
    this.stale = false;
    return { ...r, context: this.contextUsed() };
  }

  reset(): void {
    this.messages = [];
    this.stale = true;
  }

  setSystem(text: string | undefined): void {
    this.systemPrompt = text;
    this.reset();
  }

  history(): ChatTranscript {
    return { version: 1, ...(this.systemPrompt !== undefined ? { system: this.systemPrompt } : {}), messages: this.messages.map((m) => ({ ...m })) };
  }

  loadHistory(t: ChatTranscript): void {
    this.setSystem(t.system);
    this.messages = t.messages.map((m) => ({ ...m }));
  }

  contextUsed(): ContextUsage {
    const size = this.parts.contextSize;
    if (!this.stale) return { used: this.slot.cache.length, size };
    if (this.messages.length === 0) return { used: 0, size };
    return { used: Math.min(size, chatTokens(this.parts, this.turns()).length), size };
  }

  dispose(): void {
    this.slot.dispose();
  }
}
