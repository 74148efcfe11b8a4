import { statSync } from "node:fs";
import path from "node:path";
import { NotFoundError } from "../../core/errors.js";
import { type ModelRef, type ParseOptions, parseModelRef, registryNameFor } from "../../core/modelRef.js";
import { QUANT_TYPES } from "../hub/quant.js";
import { suggest } from "../quantize/types.js";
import { builtinEntry } from "./builtin.js";
import { folderFiles } from "./folderInfo.js";
import { hfFolderModelId } from "./naming.js";
import { quantizationOf } from "./quantFolder.js";
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
      const found = getModel(name) ?? (parsed.kind === "catalog" ? getModel(registryNameFor(parsed, "hf")!) : undefined) ?? pulledQuant(parsed);
      if (found) return found;
      throw notPulled(ref, parsed);
    }
    case "gguf-file": {
      const size = statSync(parsed.path).size;
      return { name: path.basename(parsed.path), format: "gguf", path: parsed.path, files: [{ path: parsed.path, size }], source: { type: "local" }, size, lineage: [], createdAt: new Date().toISOString() };
    }
    case "hf-folder": {
      const files = folderFiles(parsed.path);
      const size = files.reduce((a, f) => a + f.size, 0);
      const quantization = quantizationOf(parsed.path);
      return { name: hfFolderModelId(parsed.path), format: quantization?.method ?? "hf", ...(quantization ? { quantization } : {}), path: parsed.path, files, source: { type: "local" }, size, lineage: [], createdAt: new Date().toISOString() };
    }
  }
}

type HubRef = Extract<ModelRef, { kind: "catalog" | "hub" }>;

function repoOf(parsed: HubRef): string | undefined {
  return parsed.kind === "hub" ? parsed.repo : parsed.entry.gguf?.repo;
}

/** The GGUF pulls of the same repository (any name they were registered under). */
function pulledOf(parsed: HubRef): ModelEntry[] {
  const repo = repoOf(parsed);
  return listModels().filter((m) => m.format === "gguf" && m.source.type === "hub" && m.source.repo === repo);
}

/** `org/repo:F16` finds the F16 file pulled as plain `org/repo` (a repo with one quantization). */
function pulledQuant(parsed: HubRef): ModelEntry | undefined {
  return parsed.quant ? pulledOf(parsed).find((m) => m.quant === parsed.quant) : undefined;
}

/** "has not been pulled yet", with a did-you-mean when the quantization is a typo of one pulled or known. */
function notPulled(ref: string, parsed: HubRef): NotFoundError {
  const base = ref.slice(0, ref.lastIndexOf(":"));
  const pulled = pulledOf(parsed).map((m) => m.quant).filter((q): q is string => !!q);
  if (parsed.quant && !(QUANT_TYPES as readonly string[]).includes(parsed.quant)) {
    const close = suggest(parsed.quant, pulled).length > 0 ? suggest(parsed.quant, pulled) : suggest(parsed.quant, QUANT_TYPES);
    if (close.length > 0) {
      return new NotFoundError(`"${parsed.quant}" in ${ref} is not a quantization type.`, { hint: `Did you mean ${close.map((q) => `${base}:${q}`).join(" or ")}?${pulled.length ? ` Pulled: ${pulled.join(", ")}.` : ""}` });
    }
  }
  return new NotFoundError(`${ref} has not been pulled yet.`, { hint: `Run \`slm pull ${ref}\` first.${pulled.length ? ` Pulled from that repository: ${pulled.join(", ")}.` : ""}` });
}
