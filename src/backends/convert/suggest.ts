import { derivedName } from "../store/derived.js";
import type { ModelEntry } from "../store/types.js";

/** The exact commands that turn HF weights into a GGUF that `verb` can use (the default name convert registers). */
export function convertFirstHint(entry: ModelEntry, verb: string): string {
  const ref = entry.source.type === "local" ? entry.path : entry.name;
  const arg = /^[\w@%+=:,./-]+$/.test(ref) ? ref : `'${ref.replaceAll("'", `'\\''`)}'`;
  const name = derivedName(entry, "F16");
  return `Convert it to GGUF first: slm convert ${arg} (registers ${name}), then slm ${verb} ${name}.`;
}
