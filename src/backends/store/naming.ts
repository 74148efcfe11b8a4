import { readFileSync } from "node:fs";
import path from "node:path";
import { isValidRepoId } from "../../core/modelRef.js";
import { modelIdComponents } from "../adapters/naming.js";
import type { ModelEntry } from "./types.js";

/**
 * One answer to "which model is this?", for every command that names what it makes (convert, quantize,
 * finetune, the merged export) and for general.name inside the GGUF files they write. A Hub model is
 * its repo id; a folder is named by what it holds, never by a snapshot commit or a word like "hf".
 */

// Folder names that say what is inside rather than which model it is.
const GENERIC = new Set(["hf", "model", "models", "weights", "merged", "final", "checkpoint", "output", "base", "snapshots"]);
const COMMIT = /^[0-9a-f]{40}$/;

/** `<cache>/models--org--name/snapshots/<commit>` → "org/name"; undefined for any other folder. */
export function snapshotRepo(dir: string): string | undefined {
  const resolved = path.resolve(dir);
  if (!COMMIT.test(path.basename(resolved)) || path.basename(path.dirname(resolved)) !== "snapshots") return undefined;
  const repoDir = path.basename(path.dirname(path.dirname(resolved)));
  if (!repoDir.startsWith("models--")) return undefined;
  const repo = repoDir.slice("models--".length).split("--").join("/");
  return isValidRepoId(repo) ? repo : undefined;
}

/** config.json's `_name_or_path` when it names a Hub model ("org/name" or "name"), not a path on some machine. */
function configNameOrPath(dir: string): string | undefined {
  try {
    const config = JSON.parse(readFileSync(path.join(dir, "config.json"), "utf8")) as Record<string, unknown>;
    const v = config._name_or_path;
    if (typeof v !== "string") return undefined;
    const id = v.trim();
    const single = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(id) && !GENERIC.has(id.toLowerCase());
    return isValidRepoId(id) || single ? id : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The id of the model in a Hugging Face folder: the repo of an HF-cache snapshot; the folder's own name
 * unless it is generic; then config.json's `_name_or_path`; then the parent folder's name
 * (`test/fixtures/tiny-arith/hf` → "tiny-arith").
 */
export function hfFolderModelId(dir: string): string {
  const resolved = path.resolve(dir);
  const repo = snapshotRepo(resolved);
  if (repo) return repo;
  const own = path.basename(resolved);
  if (own && !GENERIC.has(own.toLowerCase())) return own;
  return configNameOrPath(resolved) ?? (path.basename(path.dirname(resolved)) || own || "model");
}

/** The id of any model: a Hub model's repo, a folder's model, a file's stem, a registered name without its `:QUANT`. */
export function modelIdOf(entry: ModelEntry): string {
  if (entry.source.type === "hub") return entry.source.repo;
  if (entry.source.type === "local") return entry.format !== "gguf" ? hfFolderModelId(entry.path) : entry.name.replace(/\.gguf$/i, "");
  return entry.name.replace(/:[A-Za-z0-9_]+$/, "");
}

/**
 * "org/Repo-Name:Q8_0" → "Repo-Name": the part of an id that is a name, made safe for folders and
 * registry keys ("+" stays: fine-tunes are named `<base>+<name>`).
 */
export function shortName(id: string): string {
  const bare = id.replace(/:[A-Za-z0-9_]+$/, "");
  return (
    bare
      .slice(bare.lastIndexOf("/") + 1)
      .replace(/[^A-Za-z0-9._+-]/g, "-")
      .replace(/^[^A-Za-z0-9]+/, "") || "model"
  );
}

/**
 * The first half of a name slm registers for a model it makes from `source`: a registered model's own
 * name (what the user calls it), otherwise the short name of the model's id.
 */
export function baseNameOf(source: ModelEntry): string {
  return shortName(source.source.type === "local" ? modelIdOf(source) : source.name);
}

/** general.name as llama.cpp's converter titles a model id: "tiny-arith" → "Tiny Arith", "org/SmolLM2-135M" → "SmolLM2 135M". */
export function displayName(id: string): string {
  return modelIdComponents(id, 0).name;
}
