import { statSync } from "node:fs";
import path from "node:path";
import { folderFiles } from "./folderInfo.js";
import { listModels } from "./registry.js";
import type { ModelEntry } from "./types.js";

/**
 * The GGUF files slm converted from Hugging Face folders (slm convert, or the one-time conversion before
 * run/chat/serve/eval/bench), found through their lineage: the first step is `{method: "convert", from}`
 * where `from` is the source's registered name, or its absolute path for a folder that is not registered.
 *
 * A conversion remembers the files it was made from (`parameters.sourceFiles`: path in the folder, size,
 * modification time), so a folder that changed afterwards (retrained, re-pulled at another commit, files
 * replaced) is noticed instead of its old conversion being used silently.
 */

/** What a conversion's lineage names as its source. */
export function conversionSourceKey(entry: ModelEntry): string {
  return entry.source.type === "local" ? path.resolve(entry.path) : entry.name;
}

export interface SourceFile {
  /** Relative to the folder. */
  file: string;
  size: number;
  mtimeMs: number;
}

// What decides the GGUF: weights, configs and tokenizers; a README or an image does not.
const RELEVANT = /(\.safetensors|\.bin|\.json|\.model|\.tiktoken|merges\.txt|vocab\.txt|\.jinja)$/;

/** The folder's files that a conversion reads, sorted (symlinks followed: an HF-cache snapshot's blobs). */
export function sourceFiles(dir: string): SourceFile[] {
  return folderFiles(dir)
    .filter((f) => RELEVANT.test(f.path))
    .map((f) => ({ file: path.relative(dir, f.path), size: f.size, mtimeMs: Math.round(statSync(f.path).mtimeMs) }))
    .sort((a, b) => a.file.localeCompare(b.file));
}

/** The files that differ between a conversion's record and the folder now (added, removed, resized, rewritten). */
export function changedFiles(recorded: SourceFile[], now: SourceFile[]): string[] {
  const before = new Map(recorded.map((f) => [f.file, f]));
  const after = new Map(now.map((f) => [f.file, f]));
  const changed = new Set<string>();
  for (const [file, f] of before) {
    const g = after.get(file);
    if (!g || g.size !== f.size || g.mtimeMs !== f.mtimeMs) changed.add(file);
  }
  for (const file of after.keys()) if (!before.has(file)) changed.add(file);
  return [...changed].sort();
}

export interface Conversion {
  entry: ModelEntry;
  /** The source's files that changed since the conversion; empty when it is current (or nothing was recorded). */
  changed: string[];
}

// The conversion to run when there are several: F16 first (what the one-time conversion makes).
const PREFERENCE = ["f16", "bf16", "f32", "q8_0"];

function outtypeOf(e: ModelEntry): string {
  return String(e.lineage[0]?.parameters.outtype ?? "");
}

/** The registered GGUF files converted from `source`, the preferred (F16) first, each with what changed since. */
export function conversionsOf(source: ModelEntry, models: ModelEntry[] = listModels()): Conversion[] {
  const key = conversionSourceKey(source);
  const found = models.filter((m) => m.format === "gguf" && m.lineage[0]?.method === "convert" && m.lineage[0].from === key);
  if (found.length === 0) return [];
  let now: SourceFile[] | undefined;
  return found
    .sort((a, b) => rank(outtypeOf(a)) - rank(outtypeOf(b)))
    .map((entry) => {
      const recorded = entry.lineage[0]!.parameters.sourceFiles;
      if (!Array.isArray(recorded)) return { entry, changed: [] };
      now ??= sourceFiles(source.path);
      return { entry, changed: changedFiles(recorded as SourceFile[], now) };
    });
}

function rank(outtype: string): number {
  const i = PREFERENCE.indexOf(outtype);
  return i < 0 ? PREFERENCE.length : i;
}
