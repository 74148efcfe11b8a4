import { existsSync, lstatSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import path from "node:path";
import { slmPaths } from "../../core/paths.js";
import { diskBytes, emptyFreed, type Freed, unlinkUnused } from "./discard.js";
import { blobPath, cachedRepos, partialBlobs, partialPaths, removeEmptyRepoFolders, snapshotFile } from "./hfCache.js";
import { type Pin, listPins } from "./pins.js";
import type { FileUsers } from "./references.js";

/**
 * Unfinished `slm pull`s, per repository: the partial blobs in the HF cache (`<blob>.slm-partial`
 * and its state JSON) and, through the pull's pin, the files it had finished but not yet registered.
 */
export interface UnfinishedDownload {
  /** The repository, which `slm rm` takes. */
  repo: string;
  /** Files being downloaded (repository paths), as the partial state files name them. */
  files: string[];
  /** Bytes on disk: the partial files plus the finished blobs no registered model uses yet. */
  bytes: number;
  /** Bytes received of the partial files, and their full size. */
  receivedBytes: number;
  totalBytes: number;
  /** An slm pull is writing it now. */
  active: boolean;
}

interface PartialState {
  repoPath?: string;
  size?: number;
  spans?: { written?: number }[];
}

function readState(file: string): PartialState {
  try {
    return JSON.parse(readFileSync(file, "utf8")) as PartialState;
  } catch {
    return {};
  }
}

/** Finished files of unfinished pulls: snapshot links the pins name and no registered model uses. */
function pinnedLinks(repoDir: string, pins: Pin[], users: FileUsers): { link: string; etag: string }[] {
  const out: { link: string; etag: string }[] = [];
  for (const pin of pins) {
    for (const f of pin.files ?? []) {
      const link = snapshotFile(repoDir, pin.commit, f);
      try {
        if (!lstatSync(link).isSymbolicLink() || users.inUse(link)) continue;
      } catch {
        continue;
      }
      out.push({ link, etag: path.basename(readlinkSync(link)) });
    }
  }
  return out;
}

export async function unfinishedDownloads(users: FileUsers): Promise<UnfinishedDownload[]> {
  const pins = listPins();
  const out: UnfinishedDownload[] = [];
  const seen = new Set<string>();
  for (const { repo, dir } of cachedRepos(slmPaths().hubCache)) {
    seen.add(repo);
    const repoPins = pins.filter((p) => p.repo === repo);
    const blobs = partialBlobs(dir);
    if (blobs.length === 0 && repoPins.length === 0) continue;
    const d: UnfinishedDownload = { repo, files: [], bytes: 0, receivedBytes: 0, totalBytes: 0, active: false };
    for (const blob of blobs) {
      const p = partialPaths(blob);
      const st = readState(p.state);
      if (st.repoPath) d.files.push(st.repoPath);
      d.bytes += diskBytes(p.data) + diskBytes(p.state) + diskBytes(p.stateTmp);
      d.receivedBytes += (st.spans ?? []).reduce((a, s) => a + (s.written ?? 0), 0);
      d.totalBytes += st.size ?? 0;
      // Imported here: node:crypto behind it would cost every `slm list` ~5 ms.
      const { isLockHeld } = await import("../../core/lock.js");
      if (await isLockHeld(blob)) d.active = true;
    }
    for (const l of pinnedLinks(dir, repoPins, users)) d.bytes += diskBytes(blobPath(dir, l.etag));
    out.push(d);
  }
  // A pull stopped before its first byte has a pin and nothing in the cache.
  for (const p of pins) {
    if (seen.has(p.repo)) continue;
    seen.add(p.repo);
    out.push({ repo: p.repo, files: [], bytes: 0, receivedBytes: 0, totalBytes: 0, active: false });
  }
  return out.sort((a, b) => (a.repo < b.repo ? -1 : a.repo > b.repo ? 1 : 0));
}

/** Deletes an unfinished pull of `repo`: partial blobs, its finished-but-unregistered files, its pins. */
export function discardDownload(repo: string, users: FileUsers): Freed {
  const out = emptyFreed();
  const repoDir = cachedRepos(slmPaths().hubCache).find((r) => r.repo === repo)?.dir;
  const pins = listPins().filter((p) => p.repo === repo);
  if (repoDir) {
    for (const blob of partialBlobs(repoDir)) {
      for (const f of Object.values(partialPaths(blob))) {
        if (!existsSync(f)) continue;
        out.bytes += diskBytes(f);
        rmSync(f, { force: true });
        out.deleted.push(f);
      }
    }
    unlinkUnused(repoDir, pinnedLinks(repoDir, pins, users), users, out);
    removeEmptyRepoFolders(repoDir);
  }
  for (const p of pins) rmSync(p.file, { force: true });
  return out;
}
