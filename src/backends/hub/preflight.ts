import { existsSync, statSync } from "node:fs";
import { ensureFreeSpace } from "../../core/storage.js";
import { partialBytes } from "./transfer.js";

/** Room kept beyond the files themselves: state files, snapshot links, the registry. */
const SLACK = 1 << 20;

export interface PlannedBlob {
  /** Where the file will be stored (its blob in the HF cache). */
  blob: string;
  size: number;
}

/**
 * Refuses a pull before the first byte when the cache's disk cannot hold what is still to come: the
 * sizes come from the Hub, minus blobs already complete and bytes already in unfinished downloads.
 * A blob shared by two paths counts once.
 */
export function ensureRoomForPull(repo: string, hubCache: string, blobs: PlannedBlob[]): void {
  const seen = new Set<string>();
  let needed = 0;
  for (const { blob, size } of blobs) {
    if (seen.has(blob)) continue;
    seen.add(blob);
    if (existsSync(blob) && statSync(blob).size === size) continue;
    needed += Math.max(0, size - partialBytes(blob));
  }
  if (needed === 0) return;
  ensureFreeSpace(hubCache, needed + SLACK, `the download of ${repo}`);
}
