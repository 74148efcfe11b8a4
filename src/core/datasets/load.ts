import { createHash } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import path from "node:path";
import { NotFoundError, UsageError } from "../errors.js";
import { type DatasetFormat, DatasetLineError, type Example, FORMAT_HINT, type NormaliseOptions, normaliseExample } from "./formats.js";
import { utf8Text } from "../text.js";

export interface Dataset {
  file: string;
  format: DatasetFormat;
  examples: Example[];
  /** Of the file's bytes: the lineage of a fine-tuned model names its data by this. */
  sha256: string;
}

/** Errors shown at once: enough to see a pattern, few enough to read. */
const SHOWN = 5;

/**
 * Reads and validates a JSONL dataset: every line one object of one shape (the first line's), with
 * its problems (bad JSON, unknown or mixed shapes, empty content, roles out of order, no answer)
 * reported by file and line. Blank lines are skipped.
 */
export function loadDataset(file: string, o: NormaliseOptions = {}): Dataset {
  const abs = path.resolve(file);
  let raw: Buffer;
  try {
    if (statSync(abs).isDirectory()) throw new UsageError(`${abs} is a folder; a dataset is one JSONL file.`);
    raw = readFileSync(abs);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new NotFoundError(`Dataset not found: ${abs}`);
  }
  const errors: DatasetLineError[] = [];
  const examples: Example[] = [];
  let first: { format: DatasetFormat; line: number } | undefined;
  utf8Text(raw).split(/\r?\n/).forEach((text, i) => {
    if (text.trim() === "") return;
    const line = i + 1;
    try {
      let obj: unknown;
      try {
        obj = JSON.parse(text);
      } catch (err) {
        throw new DatasetLineError(abs, line, `bad JSON (${(err as Error).message})`);
      }
      const { format, example } = normaliseExample(obj, abs, line, o);
      first ??= { format, line };
      if (format !== first.format) throw new DatasetLineError(abs, line, `mixed shapes: this line is ${format} but line ${first.line} is ${first.format} (one file holds one shape)`);
      examples.push(example);
    } catch (err) {
      if (!(err instanceof DatasetLineError)) throw err;
      errors.push(err);
    }
  });
  if (errors.length > 0) {
    const more = errors.length > SHOWN ? `\n  … and ${errors.length - SHOWN} more line(s) with problems` : "";
    const lines = errors.slice(0, SHOWN).map((e) => e.message);
    throw new UsageError(errors.length === 1 ? lines[0]! : `${path.basename(abs)} has ${errors.length} bad line(s):\n  ${lines.join("\n  ")}${more}`, { hint: FORMAT_HINT });
  }
  if (!first) throw new UsageError(`The dataset ${abs} is empty.`, { hint: FORMAT_HINT });
  return { file: abs, format: first.format, examples, sha256: createHash("sha256").update(raw).digest("hex") };
}

/** Normalised examples as JSONL, one per line (what the fine-tune recipe reads). */
export function toJsonl(examples: readonly Example[]): string {
  return examples.map((e) => JSON.stringify(e)).join("\n") + "\n";
}
