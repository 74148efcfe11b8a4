import { existsSync, mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { SlmError } from "../../core/errors.js";
import { slmPaths } from "../../core/paths.js";
import type { ModelEntry, Registry } from "./types.js";

/** The registry is one JSON file: reads need no lock (it is replaced atomically); writes hold one. */
export function readRegistry(): Registry {
  const file = slmPaths().registry;
  if (!existsSync(file)) return { version: 1, models: {} };
  try {
    const parsed = JSON.parse(readFileSync(file, "utf8")) as Registry;
    if (parsed.version !== 1 || typeof parsed.models !== "object") throw new Error("unknown layout");
    return parsed;
  } catch (err) {
    throw new SlmError(`The model registry ${file} is unreadable (${(err as Error).message}).`, {
      hint: "Move it aside; `slm pull` re-registers models that are still in the Hugging Face cache.",
    });
  }
}

export function listModels(): ModelEntry[] {
  // A plain comparison: localeCompare's first call initialises ICU's collator (~15 ms of `slm list`).
  return Object.values(readRegistry().models).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

export function getModel(name: string): ModelEntry | undefined {
  return readRegistry().models[name];
}

export function hasModel(name: string): boolean {
  return getModel(name) !== undefined;
}

/**
 * Runs `fn` under the registry lock with the registry as it is now; `save` writes it back atomically.
 * Deletions run inside too, so no model can be registered between counting references and deleting.
 */
export async function withRegistry<T>(fn: (reg: Registry, save: () => Promise<void>) => Promise<T>): Promise<T> {
  const file = slmPaths().registry;
  mkdirSync(path.dirname(file), { recursive: true });
  // The write path is imported on demand, so read-only commands (list, info) start faster.
  const [{ withLock }, { default: writeFileAtomic }] = await Promise.all([import("../../core/lock.js"), import("write-file-atomic")]);
  return withLock(file, async () => {
    const reg = readRegistry();
    return fn(reg, () => writeFileAtomic(file, JSON.stringify(reg, null, 2) + "\n"));
  });
}

/** Read-modify-write under the registry lock, so concurrent slm processes never lose each other's entries. */
export async function updateRegistry<T>(fn: (reg: Registry) => T): Promise<T> {
  return withRegistry(async (reg, save) => {
    const out = fn(reg);
    await save();
    return out;
  });
}

export async function registerModel(entry: ModelEntry): Promise<void> {
  await updateRegistry((reg) => {
    reg.models[entry.name] = entry;
  });
}

export async function unregisterModel(name: string): Promise<ModelEntry | undefined> {
  return updateRegistry((reg) => {
    const entry = reg.models[name];
    delete reg.models[name];
    return entry;
  });
}
