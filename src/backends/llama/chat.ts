import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import type { ChatHistoryItem, LlamaChatSession, LlamaContextSequence } from "node-llama-cpp";
import writeFileAtomic from "write-file-atomic";
import { CancelledError, NotFoundError, SlmError, UsageError } from "../../core/errors.js";
import { utf8Text } from "../../core/text.js";
import { fileWriteError } from "../../core/storage.js";
import { type GenerateResult, type SamplingOptions, clearHistory, openChatSession, samplingFor } from "./generate.js";
import type { LoadedModel } from "./loader.js";
import { chatPromptTokens } from "./prompt.js";

export interface ChatMessage {
  role: "user" | "assistant";
  content: string;
}

/** What `/save` writes and `/load` reads (docs/chat.md). */
export interface ChatTranscript {
  version: 1;
  system?: string;
  messages: ChatMessage[];
}

export interface ContextUsage {
  /** Tokens the conversation occupies in the context. */
  used: number;
  size: number;
}

export interface SendOptions {
  onText?: (chunk: string) => void;
  /** Aborting stops the answer; the partial answer is kept (stopReason "abort"). */
  signal?: AbortSignal;
}

export interface ChatReply extends GenerateResult {
  context: ContextUsage;
}

/**
 * The operations a chat front end needs. ChatEngine implements it over a model; the Ink view and the
 * line REPL take this shape, so the view can be tested with a stand-in engine.
 */
export interface ChatEngineApi {
  send(text: string, o?: SendOptions): Promise<ChatReply>;
  reset(): void;
  setSystem(text: string | undefined): void;
  readonly system: string | undefined;
  history(): ChatTranscript;
  loadHistory(t: ChatTranscript): void;
  contextUsed(): ContextUsage;
  /** Frees the conversation's state (its slot); the model stays loaded. */
  dispose?(): void;
}

export interface ChatEngineOptions extends SamplingOptions {
  system?: string;
}

/**
 * One conversation on one context sequence. The sequence stays alive between turns so that each answer
 * only evaluates the new message (node-llama-cpp reuses the matching prefix of the context).
 */
export class ChatEngine implements ChatEngineApi {
  private session: LlamaChatSession;
  private systemPrompt: string | undefined;
  /** After reset/load the sequence still holds the old tokens until the next answer re-evaluates it. */
  private stale = true;

  private constructor(
    private readonly loaded: LoadedModel,
    private readonly sequence: LlamaContextSequence,
    private readonly Session: typeof LlamaChatSession,
    private readonly wrapper: Awaited<ReturnType<LoadedModel["chatWrapper"]>>,
    private readonly sampling: SamplingOptions,
    system: string | undefined,
  ) {
    this.systemPrompt = system;
    this.session = this.newSession();
  }

  static async create(loaded: LoadedModel, o: ChatEngineOptions = {}): Promise<ChatEngine> {
    const { LlamaChatSession } = await import("node-llama-cpp");
    // The wrapper is resolved once per model (loader.ts): resolving it per session costs ~0.5 s.
    const wrapper = await loaded.chatWrapper();
    const { system, ...sampling } = o;
    return new ChatEngine(loaded, loaded.context.getSequence(), LlamaChatSession, wrapper, sampling, system);
  }

  get system(): string | undefined {
    return this.systemPrompt;
  }

  private newSession(): LlamaChatSession {
    return openChatSession(this.Session, this.sequence, this.wrapper, this.systemPrompt);
  }

  async send(text: string, o: SendOptions = {}): Promise<ChatReply> {
    const sampling = samplingFor(this.sampling, this.loaded.context.contextSize);
    const started = performance.now();
    let firstAt: number | undefined;
    const onTextChunk = (chunk: string) => {
      firstAt ??= performance.now();
      o.onText?.(chunk);
    };
    const meter = this.sequence.tokenMeter;
    const outputBefore = meter.usedOutputTokens;
    // The whole conversation the answer is written after, counted as run and serve count it.
    const promptTokens = chatPromptTokens(this.loaded.model, this.wrapper, this.session.getChatHistory(), text).length;
    let r: Awaited<ReturnType<LlamaChatSession["promptWithMeta"]>>;
    try {
      // stopOnAbortSignal: an abort ends the answer normally, so the partial text stays in the history.
      r = await this.session.promptWithMeta(text, { ...sampling, onTextChunk, signal: o.signal, stopOnAbortSignal: true });
    } catch (err) {
      if (o.signal?.aborted) throw new CancelledError();
      throw err;
    }
    this.stale = false;
    const ended = performance.now();
    const completionTokens = meter.usedOutputTokens - outputBefore;
    const genMs = firstAt !== undefined ? ended - firstAt : 0;
    return {
      text: r.responseText,
      stopReason: r.stopReason,
      promptTokens,
      completionTokens,
      timings: {
        loadMs: this.loaded.loadMs,
        firstTokenMs: Math.round((firstAt ?? ended) - started),
        totalMs: Math.round(ended - started),
        // The first token's time is prompt processing; speed counts the tokens after it, like run.
        tokensPerSecond: genMs > 0 && completionTokens > 1 ? ((completionTokens - 1) * 1000) / genMs : 0,
      },
      context: this.contextUsed(),
    };
  }

  /** Starts the conversation over, keeping the system prompt. */
  reset(): void {
    clearHistory(this.session, this.systemPrompt);
    this.stale = true;
  }

  /** A new system prompt starts a new conversation: the old answers were written under the old one. */
  setSystem(text: string | undefined): void {
    this.systemPrompt = text;
    this.session.dispose({ disposeSequence: false });
    this.session = this.newSession();
    this.stale = true;
  }

  history(): ChatTranscript {
    const messages: ChatMessage[] = [];
    for (const item of this.session.getChatHistory()) {
      if (item.type === "user") messages.push({ role: "user", content: item.text });
      else if (item.type === "model") messages.push({ role: "assistant", content: item.response.filter((p): p is string => typeof p === "string").join("") });
    }
    return { version: 1, ...(this.systemPrompt !== undefined ? { system: this.systemPrompt } : {}), messages };
  }

  loadHistory(t: ChatTranscript): void {
    this.setSystem(t.system);
    // The fresh session's history holds the system message as the chat template wants it (or nothing).
    const items: ChatHistoryItem[] = [...this.session.getChatHistory()];
    for (const m of t.messages) items.push(m.role === "user" ? { type: "user", text: m.content } : { type: "model", response: [m.content] });
    this.session.setChatHistory(items);
  }

  contextUsed(): ContextUsage {
    const size = this.loaded.context.contextSize;
    if (!this.stale) return { used: this.sequence.nextTokenIndex, size };
    // Until the next answer evaluates it, count what the history will take once templated.
    const items = this.session.getChatHistory();
    if (!items.some((i) => i.type !== "system")) return { used: 0, size };
    const { contextText } = this.wrapper.generateContextState({ chatHistory: items });
    return { used: Math.min(size, contextText.tokenize(this.loaded.model.tokenizer).length), size };
  }

  dispose(): void {
    this.session.dispose({ disposeSequence: false });
    this.sequence.dispose();
  }
}

/* ---------- transcript files ---------- */

function expandHome(file: string): string {
  return path.resolve(file === "~" || file.startsWith("~/") ? path.join(homedir(), file.slice(1)) : file);
}

/** Checks a parsed transcript; every problem names the file and the field. */
export function parseTranscript(value: unknown, source: string): ChatTranscript {
  const bad = (what: string) => new UsageError(`${source}: ${what}`, { hint: 'A chat file looks like {"version":1,"system":"…","messages":[{"role":"user","content":"…"}]} (what /save writes).' });
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw bad("not a chat file (expected a JSON object).");
  const o = value as Record<string, unknown>;
  if (o.version !== 1) throw bad(`unsupported version ${JSON.stringify(o.version)} (expected 1).`);
  if (o.system !== undefined && o.system !== null && typeof o.system !== "string") throw bad('"system" must be a string.');
  if (!Array.isArray(o.messages)) throw bad('"messages" must be an array.');
  const messages: ChatMessage[] = o.messages.map((m: unknown, i) => {
    if (typeof m !== "object" || m === null) throw bad(`messages[${i}] must be an object with "role" and "content".`);
    const { role, content } = m as Record<string, unknown>;
    if (role !== "user" && role !== "assistant") {
      throw bad(`messages[${i}].role must be "user" or "assistant" (got ${JSON.stringify(role)})${role === "system" ? '; put the system prompt in "system"' : ""}.`);
    }
    if (typeof content !== "string") throw bad(`messages[${i}].content must be a string.`);
    return { role, content };
  });
  return { version: 1, ...(typeof o.system === "string" ? { system: o.system } : {}), messages };
}

export function readTranscript(file: string): ChatTranscript {
  const full = expandHome(file);
  let text: string;
  try {
    text = utf8Text(readFileSync(full));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new NotFoundError(`Chat file not found: ${full}`);
    throw new UsageError(`Cannot read ${full}: ${(err as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${full}: not valid JSON (${(err as Error).message}).`);
  }
  return parseTranscript(value, full);
}

/** Written atomically, so an interrupted /save never leaves half a file over a good one. */
export async function writeTranscript(file: string, t: ChatTranscript): Promise<string> {
  const full = expandHome(file);
  try {
    await writeFileAtomic(full, `${JSON.stringify(t, null, 2)}\n`);
  } catch (err) {
    throw fileWriteError(full, err);
  }
  return full;
}

/* ---------- slash commands (shared by the Ink view and the line REPL) ---------- */

export const CHAT_COMMANDS: readonly { usage: string; description: string }[] = [
  { usage: "/help", description: "list these commands" },
  { usage: "/reset", description: "start the conversation over (keeps the system prompt)" },
  { usage: "/system TEXT", description: "set the system prompt and start over; /system alone shows it" },
  { usage: "/save FILE", description: "save the conversation as JSON" },
  { usage: "/load FILE", description: "replace the conversation with a saved one" },
  { usage: "/exit", description: "leave (also /quit, /bye, or exit, quit or bye alone on a line)" },
];

export type ChatCommand =
  | { name: "help" }
  | { name: "reset" }
  | { name: "system"; text?: string }
  | { name: "save"; file: string }
  | { name: "load"; file: string }
  | { name: "exit" };

/** A line of just one of these words leaves, like /exit; a message needs more than the word ("exit." is sent). */
const LEAVE_WORDS = new Set(["exit", "quit", "bye"]);

/**
 * A line that starts with "/" is a command; "//" sends the rest as a message starting with "/".
 * Returns undefined for a message; throws UsageError for an unknown command or a missing argument.
 */
export function parseChatCommand(line: string): ChatCommand | undefined {
  const trimmed = line.trim();
  // What people type to leave a REPL (Ollama's /bye, a shell's exit): never worth sending to the model.
  if (LEAVE_WORDS.has(trimmed.toLowerCase())) return { name: "exit" };
  if (!trimmed.startsWith("/") || trimmed.startsWith("//")) return undefined;
  const m = /^\/(\S+)\s*(.*)$/s.exec(trimmed)!;
  const name = m[1]!.toLowerCase();
  const arg = m[2]!.trim();
  const needArg = (what: string) => {
    if (!arg) throw new UsageError(`/${name} needs ${what}: /${name} ${what.toUpperCase()}.`);
    return arg;
  };
  switch (name) {
    case "help":
    case "?":
      return { name: "help" };
    case "reset":
    case "clear":
      return { name: "reset" };
    case "system":
      return arg ? { name: "system", text: arg } : { name: "system" };
    case "save":
      return { name: "save", file: needArg("file") };
    case "load":
      return { name: "load", file: needArg("file") };
    case "exit":
    case "quit":
    case "bye":
      return { name: "exit" };
    default:
      throw new UsageError(`Unknown command /${name}. /help lists the commands; start a message with // to send a leading "/".`);
  }
}

/** The text a message line sends: "//x" sends "/x". */
export function messageText(line: string): string {
  const trimmed = line.trim();
  return trimmed.startsWith("//") ? trimmed.slice(1) : trimmed;
}

export type CommandOutcome =
  | { kind: "help"; message: string }
  | { kind: "reset"; message: string }
  | { kind: "system"; message: string }
  | { kind: "saved"; message: string; file: string }
  | { kind: "loaded"; message: string; file: string; transcript: ChatTranscript }
  | { kind: "exit"; message: string };

export function helpText(): string {
  const width = Math.max(...CHAT_COMMANDS.map((c) => c.usage.length));
  return ["Commands:", ...CHAT_COMMANDS.map((c) => `  ${c.usage.padEnd(width)}  ${c.description}`)].join("\n");
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

/** Carries out a command; failures are thrown as SlmErrors for the front end to show. */
export async function runChatCommand(engine: ChatEngineApi, cmd: ChatCommand): Promise<CommandOutcome> {
  switch (cmd.name) {
    case "help":
      return { kind: "help", message: helpText() };
    case "reset":
      engine.reset();
      return { kind: "reset", message: "Conversation cleared." };
    case "system":
      if (cmd.text === undefined) return { kind: "system", message: engine.system === undefined ? "No system prompt set (the model's default applies)." : `System prompt: ${engine.system}` };
      engine.setSystem(cmd.text);
      return { kind: "system", message: "System prompt set; conversation cleared." };
    case "save": {
      const t = engine.history();
      const file = await writeTranscript(cmd.file, t);
      return { kind: "saved", file, message: `Saved ${plural(t.messages.length, "message")} to ${file}.` };
    }
    case "load": {
      const t = readTranscript(cmd.file);
      engine.loadHistory(t);
      return { kind: "loaded", file: expandHome(cmd.file), transcript: t, message: `Loaded ${plural(t.messages.length, "message")} from ${expandHome(cmd.file)}${t.system !== undefined ? " (with a system prompt)" : ""}.` };
    }
    case "exit":
      return { kind: "exit", message: "Bye." };
  }
}
