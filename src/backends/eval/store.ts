import { updateRegistry } from "../store/registry.js";
import type { EvalRecord, ModelEntry } from "../store/types.js";

/** Records kept per model: older ones beyond this are dropped, so the registry stays small. */
const MAX_RECORDS = 100;

/** Why a model's results are not stored, or undefined when they can be. */
export function whyNotStored(entry: ModelEntry, label: string, extraAdapters: number): string | undefined {
  if (entry.source.type === "local") return `${entry.name} is a file, not a registered model`;
  if (extraAdapters > 0) return `${label} has adapters that the registered ${entry.name} has not`;
  return undefined;
}

/**
 * Same data and same settings: the content hash, not the path, names the data, so a file given by a
 * relative and an absolute path, through a link, or copied elsewhere is one record, not two.
 */
function sameRun(a: EvalRecord, b: EvalRecord): boolean {
  return a.kind === b.kind && a.sha256 === b.sha256 && JSON.stringify(a.settings) === JSON.stringify(b.settings);
}

/**
 * Adds the records to the model's stored results in one locked registry update; a record of the same
 * kind, content (sha256) and settings as an earlier one replaces it, and records the path used last.
 * Built-in models keep theirs in the registry's builtinEvals. Returns false when the model has gone
 * from the registry meanwhile.
 */
export async function storeEvals(entry: ModelEntry, records: EvalRecord[]): Promise<boolean> {
  if (records.length === 0) return true;
  return updateRegistry((reg) => {
    let list: EvalRecord[];
    if (entry.source.type === "builtin") {
      reg.builtinEvals ??= {};
      list = reg.builtinEvals[entry.name] ??= [];
    } else {
      const stored = reg.models[entry.name];
      if (!stored) return false;
      list = stored.evals ??= [];
    }
    const kept = list.filter((old) => !records.some((r) => sameRun(old, r)));
    list.splice(0, list.length, ...[...kept, ...records].slice(-MAX_RECORDS));
    return true;
  });
}
