import { createHash } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import path from "node:path";
import { loadDataset } from "../../core/datasets/load.js";
import { DatasetLineError, type Message, normaliseExample } from "../../core/datasets/formats.js";
import { NotFoundError, UsageError } from "../../core/errors.js";
import { utf8Text } from "../../core/text.js";

/**
 * What the teacher answers: a conversation ending with the user's turn (answered with the chat
 * template, saved as `messages` + the answer), or a raw prompt (completed without a template, saved as
 * `prompt`/`completion`, which `slm finetune` also trains without a template).
 */
export type PromptItem = { messages: Message[] } | { prompt: string };

export interface Prompts {
  file: string;
  /** Of the file's bytes: the dataset's lineage names its prompts by it, and a resumed run must match it. */
  sha256: string;
  items: PromptItem[];
}

export const PROMPTS_HINT =
  'Give one prompt per line of a .txt file (each becomes a user message), or JSONL: {"messages":[…,{"role":"user","content":…}]} (a conversation ending with the user\'s turn) or {"prompt":…} (completed without a chat template). A dataset with answers takes --relabel.';

function readBytes(file: string): { abs: string; raw: Buffer } {
  const abs = path.resolve(file);
  try {
    if (statSync(abs).isDirectory()) throw new UsageError(`${abs} is a folder; --prompts takes one file.`, { hint: PROMPTS_HINT });
    return { abs, raw: readFileSync(abs) };
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new NotFoundError(`Prompts file not found: ${abs}`);
  }
}

/** One JSONL line without an answer: a conversation that ends with the user's turn, or `{"prompt"}`. */
function promptOf(obj: unknown, file: string, line: number): PromptItem {
  if (typeof obj === "object" && obj !== null && !Array.isArray(obj)) {
    const rec = obj as Record<string, unknown>;
    if ("prompt" in rec && !("completion" in rec)) {
      if (typeof rec.prompt !== "string" || rec.prompt.trim() === "") throw new DatasetLineError(file, line, '"prompt" must be a non-empty string');
      return { prompt: rec.prompt };
    }
  }
  const { example } = normaliseExample(obj, file, line);
  if ("messages" in example) {
    if (example.messages[example.messages.length - 1]!.role === "user") return example;
    throw new DatasetLineError(file, line, "the conversation ends with the assistant's answer: a prompt ends with the user's turn (--relabel replaces the answers of a dataset)");
  }
  throw new DatasetLineError(file, line, "this line has an answer already: a prompts file holds prompts only (--relabel replaces the answers of a dataset)");
}

/** The prompts of FILE: one per line of a .txt file, or JSONL lines without answers (blank lines skipped). */
export function readPrompts(file: string): Prompts {
  const { abs, raw } = readBytes(file);
  const text = utf8Text(raw);
  const items: PromptItem[] = [];
  const errors: string[] = [];
  const plain = /\.txt$/i.test(abs);
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === "") return;
    if (plain) {
      items.push({ messages: [{ role: "user", content: line }] });
      return;
    }
    try {
      let obj: unknown;
      try {
        obj = JSON.parse(line);
      } catch (err) {
        throw new DatasetLineError(abs, i + 1, `bad JSON (${(err as Error).message})`);
      }
      items.push(promptOf(obj, abs, i + 1));
    } catch (err) {
      if (!(err instanceof DatasetLineError)) throw err;
      errors.push(err.message);
    }
  });
  if (errors.length > 0) {
    const more = errors.length > 5 ? `\n  … and ${errors.length - 5} more` : "";
    throw new UsageError(errors.length === 1 ? errors[0]! : `${path.basename(abs)} has ${errors.length} bad line(s):\n  ${errors.slice(0, 5).join("\n  ")}${more}`, { hint: PROMPTS_HINT });
  }
  if (items.length === 0) throw new UsageError(`The prompts file ${abs} is empty.`, { hint: PROMPTS_HINT });
  return { file: abs, sha256: createHash("sha256").update(raw).digest("hex"), items };
}

/**
 * --relabel: any training dataset slm reads, each example's last answer left out for the teacher to
 * give (earlier turns of a conversation stay as they are). Raw `text` examples have no answer to replace.
 */
export function readRelabelPrompts(file: string): Prompts {
  // A .txt file is read as prompts, one per line (readPrompts): it holds no answers to replace.
  if (/\.txt$/i.test(file)) throw new UsageError(`--relabel replaces the answers of a dataset, and ${path.basename(file)} holds prompts only (one per line).`, { hint: "Drop --relabel: the teacher answers each line." });
  const d = loadDataset(file, { requireAnswer: true });
  const items = d.examples.map((e): PromptItem => {
    if ("messages" in e) return { messages: e.messages.slice(0, -1) };
    if ("prompt" in e) return { prompt: e.prompt };
    throw new UsageError(`${path.basename(d.file)} holds raw "text" examples: there is no answer for the teacher to replace.`, { hint: "--relabel takes conversations, alpaca, sharegpt or prompt/completion data." });
  });
  return { file: d.file, sha256: d.sha256, items };
}
