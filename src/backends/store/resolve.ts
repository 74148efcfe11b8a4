import { statSync } from "node:fs";
import path from "node:path";
import { NotFoundError } from "../../core/errors.js";
import { type ParseOptions, parseModelRef, registryNameFor } from "../../core/modelRef.js";
import { builtinEntry } from "./builtin.js";
import { getModel, hasModel, listModels } from "./registry.js";
import type { ModelEntry } from "./types.js";

/**
 * Turns any model reference into the model to use: a registered one, a built-in, or a local file or
 * folder (described on the fly, not registered). Hub references must have been pulled first.
 */
export function resolveModel(ref: string, o: ParseOptions = {}): ModelEntry {
  const parsed = parseModelRef(ref, hasModel, () => listModels().map((m) => m.name), o);
  switch (parsed.kind) {
    case "registered":
      return getModel(parsed.name)!;
    case "catalog":
    case "hub": {
      if (parsed.kind === "catalog" && parsed.entry.builtin) return builtinEntry(parsed.entry);
      // A pulled catalog or hub model is registered under its canonical name.
      const name = registryNameFor(parsed)!;
      const found = getModel(name) ?? (parsed.kind === "catalog" ? getModel(registryNameFor(parsed, "hf")!) : undefined);
      if (found) return found;
      throw new NotFoundError(`${ref} has not been pulled yet.`, { hint: `Run \`slm pull ${ref}\` first.` });
    }
    case "gguf-file": {
      const size = statSync(parsed.path).size;
      return { name: path.basename(parsed.path), format: "gguf", path: parsed.path, files: [{ path: parsed.path, size }], source: { type: "local" }, size, lineage: [], createdAt: new Date().toISOString() };
    }
    case "hf-folder":
      return { name: path.basename(parsed.path), format: "hf", path: parsed.path, files: [], source: { type: "local" }, size: 0, lineage: [], createdAt: new Date().toISOString() };
  }
}
