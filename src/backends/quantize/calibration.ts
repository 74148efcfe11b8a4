import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { ChatHistoryItem, GgufFileInfo } from "node-llama-cpp";
import { NotFoundError, UsageError } from "../../core/errors.js";

/**
 * Calibration data for llama-imatrix. Plain text is used as it is. JSONL in the fine-tuning dataset
 * formats is rendered through the model's own chat template, so the importance matrix sees the same
 * token patterns (chat markers included) that the model sees when it is used.
 *
 * The dataset shapes follow the fine-tune issue: {"messages"} (canonical), alpaca {"instruction","input",
 * "output"}, sharegpt {"conversations"}, {"prompt","completion"} and {"text"}.
 */

export type CalibrationFormat = "text" | "chat-jsonl";

export interface CalibrationInfo {
  file: string;
  format: CalibrationFormat;
  /** Lines of JSONL rendered (0 for plain text). */
  examples: number;
  chars: number;
  sha256: string;
  /** Whether llama-imatrix must parse special-token text (chat markers) as tokens: true for rendered chats. */
  parseSpecial: boolean;
}

type Role = "system" | "user" | "assistant";
interface Message {
  role: Role;
  content: string;
}
/** One JSONL line: a conversation, or raw text for {"text"} lines. */
type Example = { kind: "chat"; messages: Message[] } | { kind: "text"; text: string };

function fail(file: string, line: number, problem: string): never {
  throw new UsageError(`${path.basename(file)} line ${line}: ${problem}`, {
    hint: 'Each line must be one JSON object: {"messages":[{"role":"user","content":…},…]}, {"instruction","input","output"}, {"conversations":[{"from","value"}…]}, {"prompt","completion"} or {"text"}.',
  });
}

function str(v: unknown): v is string {
  return typeof v === "string";
}

const ROLE_ALIASES: Record<string, Role> = { system: "system", user: "user", human: "user", assistant: "assistant", gpt: "assistant", model: "assistant", bot: "assistant" };

/** Turns one parsed JSONL object into an example, or says exactly what is wrong with it. */
export function parseExample(obj: unknown, file: string, line: number): Example {
  if (typeof obj !== "object" || obj === null || Array.isArray(obj)) fail(file, line, "not a JSON object");
  const o = obj as Record<string, unknown>;
  const convo = (items: unknown, roleKey: string, textKey: string): Message[] => {
    if (!Array.isArray(items) || items.length === 0) fail(file, line, `"${roleKey === "role" ? "messages" : "conversations"}" must be a non-empty array`);
    return items.map((m, i) => {
      const mm = (m ?? {}) as Record<string, unknown>;
      const role = str(mm[roleKey]) ? ROLE_ALIASES[mm[roleKey].toLowerCase()] : undefined;
      if (!role) fail(file, line, `message ${i + 1} has an unknown ${roleKey} ${JSON.stringify(mm[roleKey])}`);
      if (!str(mm[textKey]) || mm[textKey].trim() === "") fail(file, line, `message ${i + 1} has empty ${textKey}`);
      return { role, content: mm[textKey] };
    });
  };
  let messages: Message[];
  if ("messages" in o) messages = convo(o.messages, "role", "content");
  else if ("conversations" in o) messages = convo(o.conversations, "from", "value");
  else if ("instruction" in o && "output" in o) {
    if (!str(o.instruction) || !str(o.output) || !o.instruction.trim() || !o.output.trim()) fail(file, line, '"instruction" and "output" must be non-empty strings');
    const input = str(o.input) && o.input.trim() ? `\n\n${o.input}` : "";
    messages = [{ role: "user", content: o.instruction + input }, { role: "assistant", content: o.output }];
  } else if ("prompt" in o && "completion" in o) {
    if (!str(o.prompt) || !str(o.completion) || !o.prompt.trim() || !o.completion.trim()) fail(file, line, '"prompt" and "completion" must be non-empty strings');
    messages = [{ role: "user", content: o.prompt }, { role: "assistant", content: o.completion }];
  } else if ("text" in o) {
    if (!str(o.text) || !o.text.trim()) fail(file, line, '"text" must be a non-empty string');
    return { kind: "text", text: o.text };
  } else {
    fail(file, line, `unknown shape (keys: ${Object.keys(o).join(", ") || "none"})`);
  }
  // A system message may only open the conversation; after it, turns alternate user → assistant.
  const body = messages[0]!.role === "system" ? messages.slice(1) : messages;
  body.forEach((m, i) => {
    if (m.role !== (i % 2 === 0 ? "user" : "assistant")) fail(file, line, `roles out of order: message ${i + 1 + messages.length - body.length} is "${m.role}"`);
  });
  if (body.length === 0) fail(file, line, "the conversation has no user message");
  return { kind: "chat", messages };
}

export function toChatHistory(messages: readonly Message[]): ChatHistoryItem[] {
  return messages.map((m): ChatHistoryItem => (m.role === "assistant" ? { type: "model", response: [m.content] } : { type: m.role, text: m.content }));
}

/** A JSONL file when its name says so, or when its first non-empty line is a JSON object. */
export function looksLikeJsonl(file: string, text: string): boolean {
  if (/\.jsonl?$/i.test(file)) return true;
  const first = text.split(/\r?\n/).find((l) => l.trim() !== "");
  if (!first || !first.trim().startsWith("{")) return false;
  try {
    return typeof JSON.parse(first) === "object";
  } catch {
    return false;
  }
}

/**
 * Writes `out` with the calibration text for `model` and describes what was written. The chat
 * template comes from the GGUF's metadata through node-llama-cpp's chat wrappers (the same ones that
 * `slm run` and `slm chat` use), without loading the weights.
 */
export async function prepareCalibration(file: string, model: string, out: string): Promise<CalibrationInfo> {
  let raw: Buffer;
  try {
    raw = readFileSync(file);
  } catch {
    throw new NotFoundError(`Calibration file not found: ${file}`);
  }
  const sha256 = createHash("sha256").update(raw).digest("hex");
  const text = raw.toString("utf8");
  if (!text.trim()) throw new UsageError(`The calibration file ${file} is empty.`);
  if (!looksLikeJsonl(file, text)) {
    writeFileSync(out, text);
    return { file, format: "text", examples: 0, chars: text.length, sha256, parseSpecial: false };
  }
  const examples: Example[] = [];
  text.split(/\r?\n/).forEach((l, i) => {
    if (!l.trim()) return;
    let obj: unknown;
    try {
      obj = JSON.parse(l);
    } catch (err) {
      fail(file, i + 1, `bad JSON (${(err as Error).message})`);
    }
    examples.push(parseExample(obj, file, i + 1));
  });
  const rendered = await renderExamples(examples, model);
  writeFileSync(out, rendered);
  return { file, format: "chat-jsonl", examples: examples.length, chars: rendered.length, sha256, parseSpecial: true };
}

async function renderExamples(examples: readonly Example[], model: string): Promise<string> {
  const { readGgufFileInfo, resolveChatWrapper, SpecialToken, SpecialTokensText } = await import("node-llama-cpp");
  const fileInfo = await readGgufFileInfo(model, { readTensorInfo: false, logWarnings: false });
  const needsTemplate = examples.some((e) => e.kind === "chat");
  const wrapper = needsTemplate ? resolveChatWrapper({ fileInfo, filename: path.basename(model), warningLogs: false }) : null;
  if (needsTemplate && !wrapper) {
    throw new UsageError(`${path.basename(model)} has no chat template to render the calibration conversations with.`, { hint: "Give the calibration data as plain text instead (any .txt file)." });
  }
  const special = specialTokenTexts(fileInfo);
  const parts: string[] = [];
  for (const e of examples) {
    if (e.kind === "text") {
      parts.push(e.text, "\n");
      continue;
    }
    const { contextText } = wrapper!.generateContextState({ chatHistory: toChatHistory(e.messages) });
    for (const v of contextText.values) {
      if (typeof v === "string") parts.push(v);
      else if (v instanceof SpecialTokensText) parts.push(v.value);
      else if (v instanceof SpecialToken) parts.push(special[v.value] ?? "");
    }
    // The wrapper leaves the last answer open (it expects to generate it); close it as training data does.
    if (special.EOS && !parts[parts.length - 1]?.endsWith(special.EOS)) parts.push(special.EOS);
  }
  const out = parts.join("");
  // llama-imatrix adds a BOS of its own at the start of the file; one there already would double it.
  return special.BOS && out.startsWith(special.BOS) ? out.slice(special.BOS.length) : out;
}

/**
 * The text of BOS, EOS… in this model's vocabulary (e.g. "<s>"), which llama-imatrix turns back into
 * those tokens with --parse-special. LlamaText's own toString() would write the word "BOS" instead.
 */
export function specialTokenTexts(fileInfo: Pick<GgufFileInfo, "metadata">): Partial<Record<"BOS" | "EOS" | "EOT" | "SEP" | "NL", string>> {
  const ggml = (fileInfo.metadata as unknown as { tokenizer?: { ggml?: Record<string, unknown> } }).tokenizer?.ggml ?? {};
  const tokens = Array.isArray(ggml.tokens) ? (ggml.tokens as unknown[]) : [];
  const text = (key: string): string | undefined => {
    const id = ggml[key];
    const t = typeof id === "number" ? tokens[id] : undefined;
    return typeof t === "string" ? t : undefined;
  };
  return { BOS: text("bos_token_id"), EOS: text("eos_token_id"), EOT: text("eot_token_id") ?? text("eos_token_id"), SEP: text("seperator_token_id"), NL: "\n" };
}
