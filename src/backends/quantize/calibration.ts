import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { ChatHistoryItem, GgufFileInfo } from "node-llama-cpp";
import { DatasetLineError, type Message, normaliseExample } from "../../core/datasets/formats.js";
import { NotFoundError, UsageError } from "../../core/errors.js";
import { utf8Text } from "../../core/text.js";

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

/** One JSONL line: a conversation, or raw text for {"text"} lines. */
type Example = { kind: "chat"; messages: Message[] } | { kind: "text"; text: string };

function fail(file: string, line: number, problem: string): never {
  throw new DatasetLineError(file, line, problem);
}

/**
 * Turns one parsed JSONL object into an example, or says exactly what is wrong with it (the dataset
 * rules of src/core/datasets). A prompt and completion become one user and one assistant turn: the
 * matrix should see them the way the model sees them in a chat.
 */
export function parseExample(obj: unknown, file: string, line: number): Example {
  const { example } = normaliseExample(obj, file, line);
  if ("text" in example) return { kind: "text", text: example.text };
  if ("prompt" in example) return { kind: "chat", messages: [{ role: "user", content: example.prompt }, { role: "assistant", content: example.completion }] };
  return { kind: "chat", messages: example.messages };
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

/** A calibration file read and checked: plain text, or the examples of a JSONL file. */
interface CalibrationData {
  sha256: string;
  text: string;
  /** Undefined for plain text. */
  examples?: Example[];
}

function readCalibration(file: string): CalibrationData {
  let raw: Buffer;
  try {
    raw = readFileSync(file);
  } catch {
    throw new NotFoundError(`Calibration file not found: ${file}`);
  }
  const sha256 = createHash("sha256").update(raw).digest("hex");
  const text = utf8Text(raw);
  if (!text.trim()) throw new UsageError(`The calibration file ${file} is empty.`);
  if (!looksLikeJsonl(file, text)) return { sha256, text };
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
  return { sha256, text, examples };
}

/**
 * Writes `out` with the calibration text for `model` and describes what was written. The chat
 * template comes from the GGUF's metadata through node-llama-cpp's chat wrappers (the same ones that
 * `slm run` and `slm chat` use), without loading the weights.
 */
export async function prepareCalibration(file: string, model: string, out: string): Promise<CalibrationInfo> {
  const { sha256, text, examples } = readCalibration(file);
  if (!examples) {
    writeFileSync(out, text);
    return { file, format: "text", examples: 0, chars: text.length, sha256, parseSpecial: false };
  }
  const rendered = await renderExamples(examples, model);
  writeFileSync(out, rendered);
  return { file, format: "chat-jsonl", examples: examples.length, chars: rendered.length, sha256, parseSpecial: true };
}

/**
 * The calibration data for a Python recipe (GPTQ, AWQ) working on Hugging Face weights: plain text as it
 * is, or every JSONL shape slm accepts as canonical lines, {"messages": […]} or {"text": …}, which the
 * recipe renders with the tokenizer's own chat template. A conversation needs a template: without one,
 * the model has no way of seeing it that the data could match. Returns what to write for the recipe.
 */
export function recipeCalibration(file: string, model: { name: string; hasChatTemplate: boolean }): { info: CalibrationInfo; content: string } {
  const { sha256, text, examples } = readCalibration(file);
  if (!examples) return { info: { file, format: "text", examples: 0, chars: text.length, sha256, parseSpecial: false }, content: text };
  if (!model.hasChatTemplate && examples.some((e) => e.kind === "chat")) {
    throw new UsageError(`${model.name} has no chat template to render the calibration conversations in ${file} with.`, { hint: "Give the calibration data as plain text instead (any .txt file)." });
  }
  const content = `${examples.map((e) => JSON.stringify(e.kind === "chat" ? { messages: e.messages } : { text: e.text })).join("\n")}\n`;
  return { info: { file, format: "chat-jsonl", examples: examples.length, chars: content.length, sha256, parseSpecial: false }, content };
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
