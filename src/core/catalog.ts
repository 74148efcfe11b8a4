import { readFileSync } from "node:fs";
import path from "node:path";
import { closest, distance } from "fastest-levenshtein";
import { packageRoot } from "./paths.js";

export interface CatalogEntry {
  id: string;
  aliases: string[];
  description: string;
  /**
   * Ships inside the package (paths relative to the package root): no download. `hf` is the same model's
   * Hugging Face folder, which fine-tuning trains on.
   */
  builtin?: { file: string; quant: string; hf?: string };
  /** `gated`: the repo needs an accepted licence and a token (slm pull says so before it tries). */
  gguf?: { repo: string; defaultQuant: string; gated?: boolean };
  hf?: { repo: string; gated?: boolean };
  parameters: number;
  contextLength: number;
  license: string;
  /** "embedding": for /v1/embeddings (slm serve); run and chat refuse it. Absent: a text generator. */
  kind?: "embedding";
  /** Which weights the GGUF holds, where the name alone does not say (e.g. a later update of the same model). */
  weights?: string;
  /** Where the repo names and default file were seen (a URL), or "unverified". */
  checked?: string;
}

let cached: CatalogEntry[] | undefined;

/** The catalog is data (catalog/models.json), read once per process. */
export function catalog(): CatalogEntry[] {
  if (!cached) {
    const file = path.join(packageRoot(), "catalog", "models.json");
    cached = (JSON.parse(readFileSync(file, "utf8")) as { models: CatalogEntry[] }).models;
  }
  return cached;
}

export function findCatalogEntry(name: string): CatalogEntry | undefined {
  const key = name.toLowerCase();
  return catalog().find((e) => e.id === key || e.aliases.includes(key));
}

export function builtinPath(entry: CatalogEntry): string | undefined {
  return entry.builtin ? path.join(packageRoot(), entry.builtin.file) : undefined;
}

export function builtinHfPath(entry: CatalogEntry): string | undefined {
  return entry.builtin?.hf ? path.join(packageRoot(), entry.builtin.hf) : undefined;
}

/** Names close to `name` among the catalog and any extra names, best first (for "did you mean"). */
export function suggestNames(name: string, extra: string[] = []): string[] {
  return nearestNames(name, [...catalog().flatMap((e) => [e.id, ...e.aliases]), ...extra]);
}

/** Names close to `name` among `names` only, best first (e.g. the models a server offers). */
export function nearestNames(name: string, names: readonly string[]): string[] {
  const candidates = [...new Set(names)];
  if (candidates.length === 0) return [];
  const key = name.toLowerCase();
  const limit = Math.max(2, Math.floor(key.length / 3));
  const near = candidates
    .map((c) => ({ c, d: distance(key, c.toLowerCase()) }))
    .filter(({ c, d }) => d <= limit || c.toLowerCase().startsWith(key) || key.startsWith(c.toLowerCase()))
    .sort((a, b) => a.d - b.d)
    .map(({ c }) => c);
  return near.length > 0 ? near.slice(0, 3) : key.length >= 3 ? [closest(key, candidates)].filter((c) => distance(key, c) <= key.length / 2) : [];
}
