import path from "node:path";
import { UsageError } from "../errors.js";
import { parseTeacher, type TeacherLogprobs } from "./teacher.js";

/**
 * The dataset shapes slm reads (one JSON object per JSONL line) and the one normalised example each
 * line becomes. Normalised examples are what the fine-tune recipe reads (recipe protocol): a chat
 * (`messages`, rendered with the chat template, loss on assistant turns), raw `prompt`/`completion`
 * text (no template, loss on the completion) or raw `text` (loss on every token). An example with an
 * answer may carry `teacher`: the teacher's top-K log-probabilities for that answer's tokens, for
 * token-level distillation (teacher.ts); it travels unchanged to the recipe.
 */
export type DatasetFormat = "messages" | "alpaca" | "sharegpt" | "prompt-completion" | "text";

export type Role = "system" | "user" | "assistant";

export interface Message {
  role: Role;
  content: string;
}

export type Example = { messages: Message[]; teacher?: TeacherLogprobs } | { prompt: string; completion: string; teacher?: TeacherLogprobs } | { text: string };

/** True when the example carries the teacher's log-probabilities (token-level distillation data). */
export const hasTeacher = (e: Example): boolean => "teacher" in e && e.teacher !== undefined;

export const FORMAT_HINT =
  'Each line must be one JSON object of one shape: {"messages":[{"role":"user","content":…},{"role":"assistant","content":…}]}, alpaca {"instruction","input","output"}, sharegpt {"conversations":[{"from":"human","value":…},{"from":"gpt","value":…}]}, {"prompt","completion"} or {"text"}.';

/** A problem with one line; the message names the file and the line, as every dataset error does. */
export class DatasetLineError extends UsageError {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly problem: string,
  ) {
    super(`${path.basename(file)} line ${line}: ${problem}`, { hint: FORMAT_HINT });
  }
}

/** The shape of one parsed line, from its keys; undefined when it is none of the known ones. */
export function detectFormat(o: Record<string, unknown>): DatasetFormat | undefined {
  if ("messages" in o) return "messages";
  if ("conversations" in o) return "sharegpt";
  if ("instruction" in o && "output" in o) return "alpaca";
  if ("prompt" in o && "completion" in o) return "prompt-completion";
  if ("text" in o) return "text";
  return undefined;
}

// sharegpt speaks of human/gpt; many exports use user/assistant (and "model" or "bot") instead.
const SHAREGPT_ROLES: Record<string, Role> = { system: "system", human: "user", user: "user", gpt: "assistant", assistant: "assistant", model: "assistant", bot: "assistant" };
const CHAT_ROLES: Record<string, Role> = { system: "system", user: "user", assistant: "assistant" };

export interface NormaliseOptions {
  /** Training needs an answer to learn: a conversation must have an assistant turn and end with one. */
  requireAnswer?: boolean;
}

const isText = (v: unknown): v is string => typeof v === "string" && v.trim() !== "";

/** Turns one parsed JSONL value into its format and normalised example, or says exactly what is wrong. */
export function normaliseExample(obj: unknown, file: string, line: number, o: NormaliseOptions = {}): { format: DatasetFormat; example: Example } {
  const fail = (problem: string): never => {
    throw new DatasetLineError(file, line, problem);
  };
  if (typeof obj !== "object" || obj === null || Array.isArray(obj)) return fail("not a JSON object");
  const r = normaliseShape(obj as Record<string, unknown>, fail, o);
  if ((obj as Record<string, unknown>).teacher === undefined) return r;
  if ("text" in r.example) return fail('"teacher" needs an answer to go with: a conversation or prompt/completion line, not text');
  const teacher = parseTeacher((obj as Record<string, unknown>).teacher);
  return typeof teacher === "string" ? fail(teacher) : { format: r.format, example: { ...r.example, teacher } };
}

function normaliseShape(rec: Record<string, unknown>, fail: (problem: string) => never, o: NormaliseOptions): { format: DatasetFormat; example: Example } {
  const format = detectFormat(rec);
  const strings = (...keys: string[]) => {
    for (const k of keys) if (!isText(rec[k])) fail(`"${k}" must be a non-empty string`);
  };
  switch (format) {
    case undefined:
      return fail(`unknown shape (keys: ${Object.keys(rec).join(", ") || "none"})`);
    case "messages":
    case "sharegpt": {
      const [listKey, roleKey, textKey, roles] = format === "messages" ? (["messages", "role", "content", CHAT_ROLES] as const) : (["conversations", "from", "value", SHAREGPT_ROLES] as const);
      const items = rec[listKey];
      if (!Array.isArray(items) || items.length === 0) return fail(`"${listKey}" must be a non-empty array`);
      const messages = items.map((m: unknown, i): Message => {
        const mm = (typeof m === "object" && m !== null ? m : {}) as Record<string, unknown>;
        const name = mm[roleKey];
        const role = typeof name === "string" ? roles[name.toLowerCase()] : undefined;
        if (!role) fail(`message ${i + 1} has an unknown ${roleKey} ${JSON.stringify(name ?? null)} (expected ${Object.keys(roles).join(", ")})`);
        if (!isText(mm[textKey])) fail(`message ${i + 1} (${role}) has empty ${textKey}`);
        return { role: role!, content: mm[textKey] as string };
      });
      checkTurns(messages, fail, o);
      return { format, example: { messages } };
    }
    case "alpaca": {
      strings("instruction", "output");
      if (rec.input !== undefined && rec.input !== null && typeof rec.input !== "string") fail('"input" must be a string');
      if (rec.system !== undefined && rec.system !== null && typeof rec.system !== "string") fail('"system" must be a string');
      // The usual alpaca rendering: the input follows the instruction after a blank line.
      const input = isText(rec.input) ? `\n\n${rec.input}` : "";
      const system: Message[] = isText(rec.system) ? [{ role: "system", content: rec.system }] : [];
      return { format, example: { messages: [...system, { role: "user", content: `${rec.instruction as string}${input}` }, { role: "assistant", content: rec.output as string }] } };
    }
    case "prompt-completion":
      strings("prompt", "completion");
      return { format, example: { prompt: rec.prompt as string, completion: rec.completion as string } };
    case "text":
      strings("text");
      return { format, example: { text: rec.text as string } };
  }
}

/** An optional system message first, then user and assistant turns in turn, starting with the user. */
function checkTurns(messages: Message[], fail: (p: string) => never, o: NormaliseOptions): void {
  const offset = messages[0]!.role === "system" ? 1 : 0;
  const body = messages.slice(offset);
  body.forEach((m, i) => {
    const expected: Role = i % 2 === 0 ? "user" : "assistant";
    if (m.role !== expected) fail(`roles out of order: message ${i + 1 + offset} is "${m.role}" where "${expected}" should be (a system message may only come first)`);
  });
  if (body.length === 0) fail("the conversation has no user message");
  if (!o.requireAnswer) return;
  if (body.length < 2) fail("no assistant turn: there is no answer to learn from");
  if (body[body.length - 1]!.role !== "assistant") fail("the conversation ends with a user message: a training conversation ends with the assistant's answer");
}
