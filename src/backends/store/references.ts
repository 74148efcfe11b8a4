import { realpathSync } from "node:fs";
import path from "node:path";
import { slmPaths } from "../../core/paths.js";
import type { ModelEntry } from "./types.js";

/**
 * The reference count behind every deletion: which registered models name a file or folder. A model
 * names what it loads (`path`), its `files`, its LoRA `adapters`, and every absolute path in its
 * lineage (the HF weights it was trained on, the run folder with the PEFT adapter and merged weights,
 * an importance matrix…). A path is in use when a model names it, a folder above it, or — for a
 * folder — anything inside it. Paths are compared as given and with symlinks resolved, so a snapshot
 * link and the blob it points at are the same file.
 */
export function namedPaths(m: ModelEntry): string[] {
  const out = [m.path, ...m.files.map((f) => f.path), ...(m.adapters ?? []).map((a) => a.path)];
  const walk = (v: unknown): void => {
    if (typeof v === "string") {
      if (path.isAbsolute(v)) out.push(v);
    } else if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === "object") Object.values(v).forEach(walk);
  };
  for (const step of m.lineage) {
    walk(step.from);
    walk(step.parameters);
  }
  return out.filter((p) => typeof p === "string" && p.length > 0);
}

/** The path itself and, when it exists and differs, where its symlinks lead. */
function forms(p: string): string[] {
  const abs = path.resolve(p);
  try {
    const real = realpathSync(abs);
    return real === abs ? [abs] : [abs, real];
  } catch {
    return [abs];
  }
}

const within = (inner: string, outer: string): boolean => inner === outer || inner.startsWith(outer.endsWith(path.sep) ? outer : outer + path.sep);

export class FileUsers {
  // Built on the first question: resolving every named path costs a realpath each (~20 ms for 100
  // models), which `slm list` pays only when there are leftovers to check.
  private index?: { path: string; model: string }[];

  constructor(private readonly models: ModelEntry[]) {}

  private get named(): { path: string; model: string }[] {
    if (this.index) return this.index;
    // A lineage may name a folder above slm's own (a model folder that holds $SLM_HOME, or "/"):
    // counted, it would keep every file slm has. Such a name is history, not a file a model loads.
    const { home, hubCache } = slmPaths();
    const tooBroad = (p: string) => [home, hubCache].some((root) => within(root, p));
    this.index = [];
    for (const m of this.models) {
      for (const p of new Set(namedPaths(m))) for (const f of forms(p)) if (!tooBroad(f)) this.index.push({ path: f, model: m.name });
    }
    return this.index;
  }

  /** The models that use `p`: they name it, a folder holding it, or (p being a folder) something in it. */
  usersOf(p: string): string[] {
    return this.match(p, (f, named) => within(f, named) || within(named, f));
  }

  /** The models that name `p` itself or a folder holding it (not only something inside it). */
  holdersOf(p: string): string[] {
    return this.match(p, (f, named) => within(f, named));
  }

  private match(p: string, test: (form: string, named: string) => boolean): string[] {
    const users = new Set<string>();
    for (const f of forms(p)) for (const n of this.named) if (test(f, n.path)) users.add(n.model);
    return [...users].sort();
  }

  inUse(p: string): boolean {
    return this.usersOf(p).length > 0;
  }
}
