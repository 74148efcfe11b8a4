import { existsSync, statSync } from "node:fs";
import { NotFoundError } from "../../core/errors.js";
import type { RepoFile, RepoSnapshot } from "./api.js";
import { blobPath, listSnapshot, readRef, repoCacheDir } from "../store/hfCache.js";

/**
 * With HF_HUB_OFFLINE=1 a pull may only use the cache: the revision must resolve through refs/ (or be
 * a commit) and its snapshot must hold the files. Blob names stand in for the checksums.
 */
export function snapshotFromCache(hubCache: string, repo: string, revision: string): RepoSnapshot {
  const dir = repoCacheDir(hubCache, repo);
  const commit = readRef(dir, revision);
  if (!commit) {
    throw new NotFoundError(`${repo}@${revision} is not in the local cache, and HF_HUB_OFFLINE is set.`, {
      hint: "Unset HF_HUB_OFFLINE (or set it to 0) to download it.",
    });
  }
  const files: RepoFile[] = [];
  for (const f of listSnapshot(dir, commit)) {
    const blob = blobPath(dir, f.etag);
    if (!existsSync(blob)) continue;
    const size = statSync(blob).size;
    files.push(/^[0-9a-f]{64}$/.test(f.etag) ? { path: f.repoPath, size, gitOid: "", sha256: f.etag } : { path: f.repoPath, size, gitOid: f.etag });
  }
  return { repo, revision, commit, files };
}
