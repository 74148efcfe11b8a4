import { existsSync, rmSync, rmdirSync, statSync } from "node:fs";
import path from "node:path";
import { NotFoundError, UsageError } from "../../core/errors.js";
import { slmPaths } from "../../core/paths.js";
import { blobPath, blobsInUse, listSnapshot, repoCacheDir, unlinkSnapshot } from "../hub/cache.js";
import { listModels, updateRegistry } from "./registry.js";
import type { ModelEntry } from "./types.js";

export interface RemoveResult {
  model: ModelEntry;
  freedBytes: number;
  removedBlobs: number;
}

/**
 * Unregisters a model and deletes its files from the HF cache, except blobs that another snapshot
 * link or another registered model still uses. Derived models' own files (outside the cache) go too.
 */
export async function removeModel(name: string): Promise<RemoveResult> {
  const model = await updateRegistry((reg) => {
    const m = reg.models[name];
    if (m) delete reg.models[name];
    return m;
  });
  if (!model) {
    throw new NotFoundError(`No registered model named "${name}".`, { hint: "`slm list` shows the registered names. Built-in models cannot be removed." });
  }
  if (model.source.type === "builtin") throw new UsageError(`${name} is built in and cannot be removed.`);
  const stillUsed = new Set(listModels().flatMap((m) => m.files.map((f) => f.path)));
  let freedBytes = 0;
  let removedBlobs = 0;
  if (model.source.type === "hub") {
    const repoDir = repoCacheDir(slmPaths().hubCache, model.source.repo);
    const links = listSnapshot(repoDir, model.source.commit);
    const mine = new Set(model.files.map((f) => f.path));
    const candidates = new Set<string>();
    for (const l of links) {
      if (!mine.has(l.link) || stillUsed.has(l.link)) continue;
      unlinkSnapshot(repoDir, l.link);
      candidates.add(l.etag);
    }
    const used = blobsInUse(repoDir);
    for (const etag of candidates) {
      if (used.has(etag)) continue;
      const blob = blobPath(repoDir, etag);
      if (!existsSync(blob)) continue;
      const { size } = statSync(blob);
      rmSync(blob, { force: true });
      freedBytes += size;
      removedBlobs++;
    }
  } else if (model.source.type === "derived") {
    for (const f of model.files) {
      if (stillUsed.has(f.path) || !f.path.startsWith(slmPaths().home + path.sep)) continue;
      if (existsSync(f.path)) {
        freedBytes += f.size;
        rmSync(f.path, { force: true });
        removedBlobs++;
      }
      // Derived models live in a folder of their own under $SLM_HOME/models: drop it once it is empty.
      try {
        rmdirSync(path.dirname(f.path));
      } catch {
        // not empty, or already gone
      }
    }
  }
  return { model, freedBytes, removedBlobs };
}
