import { createHash } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import path from "node:path";
import { NotFoundError, UsageError } from "../../core/errors.js";
import { type MatchMode, compileRegex } from "./match.js";
import { utf8Text } from "../../core/text.js";

/**
 * Task files for `slm eval --task`: JSONL, one question per line, every line of one kind.
 *
 * Generation: {"prompt": str} or {"messages": [...]}, with {"answer": str} or {"answers": [str…]}, and
 * optionally {"match": "exact"|"contains"|"regex"} for that line. A chat whose last message is the
 * assistant's and that has no "answer" takes that message as the answer (the fine-tuning datasets'
 * shape, so an eval split of one can be scored as it is).
 *
 * Multiple choice: {"question": str} or {"messages": [...]}, {"choices": [str…]} and {"answer": index}.
 */
export type Role = "system" | "user" | "assistant";
export interface Message {
  role: Role;
  content: string;
}

export interface GenerationItem {
  line: number;
  messages: Message[];
  answers: string[];
  match?: MatchMode;
}

export interface ChoiceItem {
  line: number;
  messages: Message[];
  choices: string[];
  answer: number;
}

interface TaskBase {
  /** Absolute path of the file. */
  file: string;
  /** The file's name without .jsonl: the task's name in tables. */
  name: string;
  sha256: string;
  /** Lines in the file (before --limit). */
  total: number;
}
export type Task = (TaskBase & { kind: "generate"; items: GenerationItem[] }) | (TaskBase & { kind: "choice"; items: ChoiceItem[] });

const HINT =
  'Generation lines: {"prompt"|"messages", "answer"|"answers"}; multiple-choice lines: {"question"|"messages", "choices":[…], "answer": index}. See docs/eval.md.';

function fail(file: string, line: number, problem: string): never {
  throw new UsageError(`${path.basename(file)} line ${line}: ${problem}`, { hint: HINT });
}

const ROLES = new Set<string>(["system", "user", "assistant"]);

function messagesOf(o: Record<string, unknown>, textKey: "prompt" | "question", file: string, line: number): Message[] {
  if ("messages" in o) {
    if (!Array.isArray(o.messages) || o.messages.length === 0) fail(file, line, '"messages" must be a non-empty array');
    return o.messages.map((m: unknown, i: number) => {
      const mm = (typeof m === "object" && m !== null ? m : {}) as Record<string, unknown>;
      if (typeof mm.role !== "string" || !ROLES.has(mm.role)) fail(file, line, `message ${i + 1} has role ${JSON.stringify(mm.role)} (expected system, user or assistant)`);
      if (typeof mm.content !== "string") fail(file, line, `message ${i + 1} has no text "content"`);
      return { role: mm.role as Role, content: mm.content };
    });
  }
  const text = o[textKey];
  if (typeof text !== "string" || text.trim() === "") fail(file, line, `needs "${textKey}" (a non-empty string) or "messages"`);
  return [{ role: "user", content: text }];
}

/** The prompt must end with a user turn: the model answers it. */
function checkPrompt(messages: Message[], file: string, line: number): void {
  if (messages.length === 0 || messages[messages.length - 1]!.role !== "user") fail(file, line, "the conversation must end with a user message (the question)");
}

function answerText(v: unknown): string | undefined {
  return typeof v === "string" ? v : typeof v === "number" && Number.isFinite(v) ? String(v) : undefined;
}

function parseGeneration(o: Record<string, unknown>, file: string, line: number): GenerationItem {
  let messages = messagesOf(o, "prompt", file, line);
  let answers: string[];
  if ("answers" in o) {
    if (!Array.isArray(o.answers) || o.answers.length === 0) fail(file, line, '"answers" must be a non-empty array of strings');
    answers = o.answers.map((a: unknown) => answerText(a) ?? fail(file, line, '"answers" must hold only strings'));
  } else if ("answer" in o) {
    const a = answerText(o.answer);
    if (a === undefined) fail(file, line, '"answer" must be a string');
    answers = [a];
  } else if (messages.length > 1 && messages[messages.length - 1]!.role === "assistant") {
    answers = [messages[messages.length - 1]!.content];
    messages = messages.slice(0, -1);
  } else {
    fail(file, line, 'no "answer" or "answers" (nor a final assistant message to take it from)');
  }
  checkPrompt(messages, file, line);
  let match: MatchMode | undefined;
  if ("match" in o) {
    if (o.match !== "exact" && o.match !== "contains" && o.match !== "regex") fail(file, line, `"match" must be "exact", "contains" or "regex" (got ${JSON.stringify(o.match)})`);
    match = o.match;
  }
  return { line, messages, answers, match };
}

function parseChoice(o: Record<string, unknown>, file: string, line: number): ChoiceItem {
  const messages = messagesOf(o, "question", file, line);
  checkPrompt(messages, file, line);
  if (!Array.isArray(o.choices) || o.choices.length < 2) fail(file, line, '"choices" must be an array of at least two strings');
  const choices = o.choices.map((c: unknown) => {
    const t = answerText(c);
    if (t === undefined || t === "") fail(file, line, '"choices" must hold non-empty strings');
    return t;
  });
  if (typeof o.answer !== "number" || !Number.isInteger(o.answer) || o.answer < 0 || o.answer >= choices.length) {
    fail(file, line, `"answer" must be the index of the right choice, 0 to ${choices.length - 1} (got ${JSON.stringify(o.answer)})`);
  }
  return { line, messages, choices, answer: o.answer };
}

/**
 * Reads and checks a whole task file. Regexes are compiled here, so a bad one is reported with its line
 * before any model loads. `defaultMatch` is --match: it decides whether answers must compile as regexes.
 */
export function readTask(file: string, defaultMatch: MatchMode = "exact"): Task {
  const abs = path.resolve(file);
  let raw: Buffer;
  try {
    if (statSync(abs).isDirectory()) throw new UsageError(`${abs} is a folder; --task takes a JSONL file.`);
    raw = readFileSync(abs);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new NotFoundError(`Task file not found: ${abs}`);
  }
  const sha256 = createHash("sha256").update(raw).digest("hex");
  const gen: GenerationItem[] = [];
  const mc: ChoiceItem[] = [];
  utf8Text(raw)
    .split(/\r?\n/)
    .forEach((text, i) => {
      const line = i + 1;
      if (text.trim() === "") return;
      let obj: unknown;
      try {
        obj = JSON.parse(text);
      } catch (err) {
        fail(abs, line, `bad JSON (${(err as Error).message})`);
      }
      if (typeof obj !== "object" || obj === null || Array.isArray(obj)) fail(abs, line, "not a JSON object");
      const o = obj as Record<string, unknown>;
      if ("choices" in o) mc.push(parseChoice(o, abs, line));
      else {
        const item = parseGeneration(o, abs, line);
        if ((item.match ?? defaultMatch) === "regex") {
          for (const a of item.answers) {
            try {
              compileRegex(a);
            } catch (err) {
              fail(abs, line, `answer ${JSON.stringify(a)} is not a valid regular expression (${(err as Error).message})`);
            }
          }
        }
        gen.push(item);
      }
      if (gen.length > 0 && mc.length > 0) fail(abs, line, "mixes multiple-choice and generation questions; put each kind in its own file");
    });
  const base = { file: abs, name: path.basename(abs).replace(/\.jsonl?$/i, ""), sha256, total: gen.length + mc.length };
  if (base.total === 0) throw new UsageError(`The task file ${abs} has no questions.`, { hint: HINT });
  return mc.length > 0 ? { ...base, kind: "choice", items: mc } : { ...base, kind: "generate", items: gen };
}

/** The first `limit` questions (the file's order, so runs with the same --limit score the same questions). */
export function limitTask(task: Task, limit: number | undefined): Task {
  if (limit === undefined || limit >= task.items.length) return task;
  return task.kind === "generate" ? { ...task, items: task.items.slice(0, limit) } : { ...task, items: task.items.slice(0, limit) };
}
