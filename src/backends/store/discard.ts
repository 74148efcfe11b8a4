import { existsSync, lstatSync, readdirSync, rmSync, rmdirSync } from "node:fs";
import path from "node:path";
import { slmPaths } from "../../core/paths.js";
import { blobPath, blobsInUse, unlinkSnapshot } from "./hfCache.js";
import type { FileUsers } from "./references.js";

/**
 * Deleting files that slm owns — in $SLM_HOME/models and runs/ and in the HF cache — always through
 * the reference count: what a registered model still uses is kept, and said so. Files anywhere else
 * (the user's own GGUFs, data, HF folders) are never deleted.
 */
export interface Kept {
  path: string;
  usedBy: string[];
}

export interface Freed {
  bytes: number;
  deleted: string[];
  kept: Kept[];
}

export const emptyFreed = (): Freed => ({ bytes: 0, deleted: [], kept: [] });

export const modelsRoot = (): string => path.join(slmPaths().home, "models");
export const runsRoot = (): string => path.join(slmPaths().home, "runs");

const within = (p: string, root: string) => p.startsWith(root + path.sep);

/** Where slm may delete `p`: its own model and run folders, or the HF cache; undefined elsewhere. */
export function ownedArea(p: string): "models" | "runs" | "hf-cache" | undefined {
  const abs = path.resolve(p);
  if (within(abs, modelsRoot())) return "models";
  if (within(abs, runsRoot())) return "runs";
  if (within(abs, slmPaths().hubCache)) return "hf-cache";
  return undefined;
}

/** Bytes a file or folder takes on disk (allocated blocks, so a sparse partial download counts what it holds). */
export function diskBytes(p: string): number {
  let st;
  try {
    st = lstatSync(p);
  } catch {
    return 0;
  }
  if (st.isSymbolicLink()) return 0;
  if (!st.isDirectory()) return Math.min(st.size, st.blocks * 512 || st.size);
  return readdirSync(p).reduce((a, n) => a + diskBytes(path.join(p, n)), 0);
}

/**
 * Deletes a file or folder in $SLM_HOME/models or runs/ unless a registered model uses it. A folder
 * that only holds used files keeps those (recorded in `out.kept`) and loses the rest.
 */
export function deleteUnused(p: string, users: FileUsers, out: Freed): void {
  const area = ownedArea(p);
  if ((area !== "models" && area !== "runs") || !existsSync(p)) return;
  const holders = users.usersOf(p);
  if (holders.length === 0) {
    out.bytes += diskBytes(p);
    rmSync(p, { recursive: true, force: true });
    out.deleted.push(p);
    return;
  }
  const st = lstatSync(p);
  // Used as a whole (named itself, or a folder above it is): keep it in one piece.
  if (!st.isDirectory() || users.holdersOf(p).length > 0) {
    out.kept.push({ path: p, usedBy: holders });
    return;
  }
  for (const n of readdirSync(p)) deleteUnused(path.join(p, n), users, out);
  try {
    rmdirSync(p);
  } catch {
    // still holds used files
  }
}

/**
 * Removes snapshot links of one cached repository that no registered model uses, then each blob they
 * pointed at that no snapshot (of any revision, slm's or a Python tool's) links to any more.
 */
export function unlinkUnused(repoDir: string, links: { link: string; etag: string }[], users: FileUsers, out: Freed): void {
  const candidates = new Set<string>();
  for (const l of links) {
    const usedBy = users.usersOf(l.link);
    if (usedBy.length > 0) {
      out.kept.push({ path: l.link, usedBy });
      continue;
    }
    unlinkSnapshot(repoDir, l.link);
    candidates.add(l.etag);
  }
  const linked = blobsInUse(repoDir);
  for (const etag of candidates) {
    const blob = blobPath(repoDir, etag);
    if (linked.has(etag) || !existsSync(blob)) continue;
    out.bytes += diskBytes(blob);
    rmSync(blob, { force: true });
    out.deleted.push(blob);
  }
}
