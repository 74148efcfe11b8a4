import { type UnfinishedDownload, unfinishedDownloads } from "./downloads.js";
import { FileUsers } from "./references.js";
import { listModels } from "./registry.js";
import { type AbandonedRun, abandonedRuns } from "./runs.js";
import type { ModelEntry } from "./types.js";

/** What pulls and fine-tunes left behind, and what `slm rm` resolves names against. */
export interface Leftovers {
  downloads: UnfinishedDownload[];
  runs: AbandonedRun[];
  /** Bytes they hold on disk in all. */
  bytes: number;
}

export async function leftovers(models: ModelEntry[] = listModels()): Promise<Leftovers> {
  const users = new FileUsers(models);
  const [downloads, runs] = [await unfinishedDownloads(users), await abandonedRuns(users)];
  return { downloads, runs, bytes: [...downloads, ...runs].reduce((a, l) => a + l.bytes, 0) };
}

