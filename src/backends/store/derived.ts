import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from "node:fs";
import path from "node:path";
import { findCatalogEntry } from "../../core/catalog.js";
import { UsageError } from "../../core/errors.js";
import { slmPaths } from "../../core/paths.js";
import { removeDeadWork } from "../../core/pid.js";
import { baseNameOf } from "./naming.js";
import { FileUsers } from "./references.js";
import { hasModel, listModels, updateRegistry } from "./registry.js";
import type { ModelEntry } from "./types.js";

/**
 * Models that slm makes (quantize, convert, fine-tune) live in $SLM_HOME/models/<name>/. They are built
 * in a `.tmp-<pid>-…` folder there and appear by one rename under the registry's lock, so an
 * interrupted, failed or disk-full run leaves neither a folder nor a registry entry.
 */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$/;

export function modelsDir(): string {
  return path.join(slmPaths().home, "models");
}

/** Refuses a name that cannot be a folder, shadows a catalog alias, or is taken. */
export function assertFreeName(name: string): void {
  if (!NAME.test(name) || name.toLowerCase().endsWith(".gguf")) {
    throw new UsageError(`"${name}" cannot be a model name: use letters, digits, ".", "_", "-" or "+" (no slashes or colons, no .gguf ending).`);
  }
  if (findCatalogEntry(name)) throw new UsageError(`"${name}" is a catalog name; a model made by slm needs a name of its own.`, { hint: "Choose another name with --out." });
  if (hasModel(name)) throw new UsageError(`A model named "${name}" is already registered.`, { hint: `Choose another name with --out, or remove it first with \`slm rm ${name}\`.` });
  assertFolderFree(name, new FileUsers(listModels()));
}

/**
 * `slm rm` keeps a removed model's files that other models use (an adapter a quantized copy loads),
 * in the folder of that name: a new model of the same name must not replace that folder.
 */
function assertFolderFree(name: string, users: FileUsers): void {
  const dir = path.join(modelsDir(), name);
  const usedBy = existsSync(dir) ? users.usersOf(dir) : [];
  if (usedBy.length > 0) {
    throw new UsageError(`${dir} still holds files that ${usedBy.join(", ")} ${usedBy.length === 1 ? "uses" : "use"}, so no new model can be named "${name}".`, { hint: "Choose another name with --out." });
  }
}

/** `<source>-<suffix>`: a registered source's name, or the model a file or folder holds (store/naming.ts). */
export function derivedName(source: ModelEntry, suffix: string): string {
  return `${baseNameOf(source)}-${suffix}`;
}

/** A fresh work folder under $SLM_HOME/models, after clearing those that killed processes left. */
export function derivedWorkDir(): string {
  const dir = modelsDir();
  mkdirSync(dir, { recursive: true });
  removeDeadWork(dir, /^\.tmp-(\d+)-/);
  return mkdtempSync(path.join(dir, `.tmp-${process.pid}-`));
}

/**
 * Moves a finished work folder to $SLM_HOME/models/<name> and registers `entry` (whose paths already
 * point there), as one step under the registry's lock: two slm processes can never both claim a name.
 */
export async function installDerived(work: string, entry: ModelEntry): Promise<void> {
  const finalDir = path.join(modelsDir(), entry.name);
  let moved = false;
  try {
    await updateRegistry((reg) => {
      if (reg.models[entry.name]) throw new UsageError(`A model named "${entry.name}" was registered while this one was being made.`, { hint: "Run again with another --out name." });
      // A folder without a registry entry is what an older crash or `slm rm` left: it goes, unless it
      // holds files that other models still use.
      assertFolderFree(entry.name, new FileUsers(Object.values(reg.models)));
      if (existsSync(finalDir)) rmSync(finalDir, { recursive: true, force: true });
      renameSync(work, finalDir);
      moved = true;
      reg.models[entry.name] = entry;
    });
  } catch (err) {
    if (moved) rmSync(finalDir, { recursive: true, force: true });
    throw err;
  }
}
