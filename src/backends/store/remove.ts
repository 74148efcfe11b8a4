import { lstatSync, readlinkSync } from "node:fs";
import path from "node:path";
import { NotFoundError } from "../../core/errors.js";
import { slmPaths } from "../../core/paths.js";
import { deleteUnused, emptyFreed, type Freed, type Kept, modelsRoot, ownedArea, unlinkUnused } from "./discard.js";
import { discardDownload } from "./downloads.js";
import { FileUsers } from "./references.js";
import { withRegistry } from "./registry.js";
import { discardRun } from "./runs.js";
import { leftovers } from "./leftovers.js";
import { resolveRemoval } from "./targets.js";
import type { ModelEntry, Registry } from "./types.js";

/**
 * `slm rm`: every name is checked before anything is deleted (all or none), then models are
 * unregistered and their files deleted through the reference count, and unfinished downloads and
 * abandoned fine-tune runs discarded — all under the registry's lock.
 */
export interface Removed {
  name: string;
  kind: "model" | "download" | "run";
  freedBytes: number;
  deleted: string[];
  /** Files kept because other registered models use them. */
  kept: Kept[];
  /** Run folders of a removed fine-tuned model, now abandoned (`slm rm <name>` discards one). */
  runFolders?: string[];
}

export interface RemoveResult {
  removed: Removed[];
  freedBytes: number;
}

/** Removes the named models, unfinished downloads (by repository) and abandoned runs; `leftovers`: all of the latter two. */
export async function removeAll(names: string[], o: { leftovers?: boolean } = {}): Promise<RemoveResult> {
  const found = await leftovers();
  const targets = resolveRemoval(names, found);
  if (o.leftovers) {
    for (const d of found.downloads) if (!d.active && !targets.some((t) => t.name === d.repo)) targets.push({ kind: "download", name: d.repo, download: d });
    for (const r of found.runs) if (!targets.some((t) => t.kind === "run" && t.run.path === r.path)) targets.push({ kind: "run", name: r.name, run: r });
  }
  return withRegistry(async (reg, save) => {
    const gone = targets.filter((t) => t.kind === "model" && !reg.models[t.name]).map((t) => t.name);
    if (gone.length > 0) throw new NotFoundError(`${gone.join(", ")} ${gone.length === 1 ? "was" : "were"} removed by another slm process meanwhile; nothing was removed.`);
    const models = targets.flatMap((t) => (t.kind === "model" ? [reg.models[t.name]!] : []));
    for (const m of models) delete reg.models[m.name];
    if (models.length > 0) await save();
    const users = new FileUsers(Object.values(reg.models));
    const removed: Removed[] = [];
    for (const t of targets) {
      const model = models.find((m) => m.name === t.name);
      const freed = t.kind === "model" ? deleteModelFiles(model!, users, reg) : t.kind === "download" ? discardDownload(t.download.repo, users) : await discardRun(t.run, users);
      const runFolders = t.kind === "model" ? abandonedRunFolders(model!, users) : [];
      removed.push({ name: t.name, kind: t.kind, freedBytes: freed.bytes, deleted: freed.deleted, kept: dedupe(freed.kept), ...(runFolders.length > 0 ? { runFolders } : {}) });
    }
    return { removed, freedBytes: removed.reduce((a, r) => a + r.freedBytes, 0) };
  });
}

/** One model, for commands that remove what they made (`quantize --sweep --keep best`, a failed fine-tune). */
export async function removeModel(name: string): Promise<Removed> {
  return (await removeAll([name])).removed[0]!;
}

const dedupe = (kept: Kept[]): Kept[] => [...new Map(kept.map((k) => [k.path, k])).values()];

/**
 * The files an unregistered model named, less what other models use: its snapshot links and blobs in
 * the HF cache, and its folder in $SLM_HOME/models (with whatever else it holds).
 */
function deleteModelFiles(m: ModelEntry, users: FileUsers, reg: Registry): Freed {
  const out = emptyFreed();
  const own = [...new Set([m.path, ...m.files.map((f) => f.path), ...(m.adapters ?? []).map((a) => a.path)].map((p) => path.resolve(p)))];
  const { hubCache } = slmPaths();
  const links = new Map<string, { link: string; etag: string }[]>();
  const folders = new Set<string>(m.source.type === "derived" ? [path.join(modelsRoot(), m.name)] : []);
  for (const p of own) {
    const area = ownedArea(p);
    if (area === "hf-cache") {
      const link = snapshotLink(p);
      if (!link) continue;
      const repoDir = path.join(hubCache, path.relative(hubCache, p).split(path.sep)[0]!);
      links.set(repoDir, [...(links.get(repoDir) ?? []), link]);
    } else if (area === "models") {
      const folder = path.join(modelsRoot(), path.relative(modelsRoot(), p).split(path.sep)[0]!);
      // Another registered model's folder is its own: only the file this one named may go.
      if (reg.models[path.basename(folder)]) deleteUnused(p, users, out);
      else folders.add(folder);
    } else if (area === "runs") deleteUnused(p, users, out);
  }
  for (const [repoDir, l] of links) unlinkUnused(repoDir, l, users, out);
  for (const f of folders) if (!reg.models[path.basename(f)]) deleteUnused(f, users, out);
  return out;
}

function snapshotLink(p: string): { link: string; etag: string } | undefined {
  try {
    return lstatSync(p).isSymbolicLink() ? { link: p, etag: path.basename(readlinkSync(p)) } : undefined;
  } catch {
    return undefined;
  }
}

/** The run folders a removed model's lineage named that nothing uses any more. */
function abandonedRunFolders(m: ModelEntry, users: FileUsers): string[] {
  const dirs = m.lineage.flatMap((s) => (typeof s.parameters.runDir === "string" ? [s.parameters.runDir] : []));
  return dirs.filter((d) => ownedArea(d) === "runs" && !users.inUse(d) && exists(d));
}

function exists(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}
