import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import writeFileAtomic from "write-file-atomic";
import { UsageError } from "../../core/errors.js";
import { slmPaths } from "../../core/paths.js";
import type { SamplingOptions } from "../llama/generate.js";

/**
 * A teacher's answers as a dataset under $SLM_HOME/datasets/<name>/: `data.jsonl` (the records, in
 * prompt order: contract 1 of docs/distill.md) and `dataset.json` (its lineage), both written whole
 * once every prompt is answered. Until then each answer is appended to `partial.jsonl` as it comes,
 * keyed by its prompt's index, under `generation.json` (what is being generated): a run stopped by
 * Ctrl+C or a crash continues with the prompts still unanswered when the same generation starts again.
 */

/** The teacher's top-K per answer token (contract 1): ids, then the K most likely ids and their ln p. */
export interface TeacherTokens {
  tokens: number[];
  top_ids: number[][];
  top_logprobs: number[][];
}

export type DistillRecord = ({ messages: { role: string; content: string }[] } | { prompt: string; completion: string }) & { teacher?: TeacherTokens };

/** What makes two generations the same one: a resumed run must match it field for field. */
export interface GenerationKey {
  teacher: { name: string; path: string; adapters: { path: string; scale: number }[] };
  prompts: { sha256: string; count: number; relabel: boolean };
  sampling: SamplingOptions;
  kdLogprobs: number | null;
}

export interface DatasetLineage extends GenerationKey {
  name: string;
  promptsFile: string;
  records: number;
  generatedTokens: number;
  /** Seconds spent generating, over every run that added answers. */
  seconds: number;
  createdAt: string;
  finishedAt: string;
}

export interface DatasetFiles {
  dir: string;
  data: string;
  lineage: string;
  partial: string;
  generation: string;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,159}$/;

export function datasetFiles(name: string): DatasetFiles {
  if (!NAME.test(name)) throw new UsageError(`"${name}" cannot be a dataset's name: use letters, digits, ".", "_", "+" or "-".`);
  const dir = path.join(slmPaths().home, "datasets", name);
  return { dir, data: path.join(dir, "data.jsonl"), lineage: path.join(dir, "dataset.json"), partial: path.join(dir, "partial.jsonl"), generation: path.join(dir, "generation.json") };
}

/** Drops what JSON leaves out (undefined options), so a key read back from disk compares equal. */
const canonical = (k: GenerationKey): string => JSON.stringify(k);

/** The first field where two keys differ, in words, for the refusal. */
function difference(a: GenerationKey, b: GenerationKey): string {
  if (JSON.stringify(a.teacher) !== JSON.stringify(b.teacher)) return "another teacher";
  if (JSON.stringify(a.prompts) !== JSON.stringify(b.prompts)) return "other prompts";
  if (JSON.stringify(a.sampling) !== JSON.stringify(b.sampling)) return "other sampling options";
  return "other --kd-logprobs";
}

function refuse(f: DatasetFiles, why: string, finished: boolean): UsageError {
  return new UsageError(`The dataset ${path.basename(f.dir)} ${finished ? "was made" : "was started"} with ${why} than this run's.`, {
    hint: `Give another --out, or remove ${f.dir} to ${finished ? "make it again" : "start over"}.`,
  });
}

/** The finished dataset of this generation, if there is one; a finished dataset of another generation is refused. */
export function finishedDataset(f: DatasetFiles, key: GenerationKey): DatasetLineage | undefined {
  if (!existsSync(f.lineage)) return undefined;
  const lineage = JSON.parse(readFileSync(f.lineage, "utf8")) as DatasetLineage;
  const { name: _n, promptsFile: _f, records: _r, generatedTokens: _g, seconds: _s, createdAt: _c, finishedAt: _e, ...stored } = lineage;
  if (canonical(stored) !== canonical(key)) throw refuse(f, difference(stored, key), true);
  return lineage;
}

export interface Progress {
  /** Answers already given, by prompt index. */
  done: Map<number, { record: DistillRecord; tokens: number }>;
  createdAt: string;
  /** Seconds spent by earlier runs. */
  seconds: number;
}

interface PartialLine {
  i: number;
  record: DistillRecord;
  tokens: number;
  seconds: number;
}

/**
 * Starts or resumes the generation of `key`: the answers a stopped run kept, or none. The partial file
 * is read line by line; a last line cut short by a crash is dropped (its prompt is answered again).
 */
export function openGeneration(f: DatasetFiles, key: GenerationKey): Progress {
  mkdirSync(f.dir, { recursive: true });
  const done = new Map<number, { record: DistillRecord; tokens: number }>();
  if (!existsSync(f.generation)) {
    const createdAt = new Date().toISOString();
    rmSync(f.partial, { force: true });
    writeFileAtomic.sync(f.generation, JSON.stringify({ ...key, createdAt }, null, 2) + "\n");
    return { done, createdAt, seconds: 0 };
  }
  const { createdAt, ...stored } = JSON.parse(readFileSync(f.generation, "utf8")) as GenerationKey & { createdAt: string };
  if (canonical(stored) !== canonical(key)) throw refuse(f, difference(stored, key), false);
  let seconds = 0;
  const text = existsSync(f.partial) ? readFileSync(f.partial, "utf8") : "";
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    let p: PartialLine;
    try {
      p = JSON.parse(line) as PartialLine;
    } catch {
      continue;
    }
    if (Number.isInteger(p.i) && p.i >= 0 && p.i < key.prompts.count) done.set(p.i, { record: p.record, tokens: p.tokens });
    seconds = Math.max(seconds, p.seconds);
  }
  return { done, createdAt, seconds };
}

/**
 * Appends one answer. A line is one write() of a few hundred bytes, so an interrupted process leaves
 * whole lines and at most one torn last line, which openGeneration drops. `seconds`: generation time
 * so far, over every run (the lineage's total).
 */
export function appendAnswer(f: DatasetFiles, i: number, record: DistillRecord, tokens: number, seconds: number): void {
  appendFileSync(f.partial, JSON.stringify({ i, record, tokens, seconds } satisfies PartialLine) + "\n");
}

/** Writes data.jsonl in prompt order and its lineage, each atomically, then drops the partial state. */
export function finishDataset(f: DatasetFiles, key: GenerationKey, records: DistillRecord[], o: { promptsFile: string; generatedTokens: number; seconds: number; createdAt: string }): DatasetLineage {
  writeFileAtomic.sync(f.data, records.map((r) => JSON.stringify(r)).join("\n") + "\n");
  const lineage: DatasetLineage = { name: path.basename(f.dir), ...key, promptsFile: o.promptsFile, records: records.length, generatedTokens: o.generatedTokens, seconds: Math.round(o.seconds * 100) / 100, createdAt: o.createdAt, finishedAt: new Date().toISOString() };
  writeFileAtomic.sync(f.lineage, JSON.stringify(lineage, null, 2) + "\n");
  rmSync(f.partial, { force: true });
  rmSync(f.generation, { force: true });
  return lineage;
}
