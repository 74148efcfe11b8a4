import { statSync } from "node:fs";
import { builtinPath, catalog, type CatalogEntry } from "../../core/catalog.js";
import { readRegistry } from "./registry.js";
import type { ModelEntry } from "./types.js";

/**
 * Built-in models ship in the package: they are always "registered", with no download. The registry
 * holds only what slm learnt about them later (eval results).
 */
export function builtinEntry(e: CatalogEntry): ModelEntry {
  const evals = readRegistry().builtinEvals?.[e.id];
  const file = builtinPath(e)!;
  const size = statSync(file).size;
  return {
    name: e.id,
    format: "gguf",
    path: file,
    files: [{ path: file, size }],
    source: { type: "builtin" },
    quant: e.builtin?.quant,
    size,
    parameters: e.parameters,
    contextLength: e.contextLength,
    architecture: "llama",
    lineage: [],
    ...(evals && evals.length > 0 ? { evals } : {}),
    createdAt: new Date(statSync(file).mtimeMs).toISOString(),
  };
}

export function builtinEntries(): ModelEntry[] {
  return catalog().filter((e) => e.builtin).map(builtinEntry);
}
