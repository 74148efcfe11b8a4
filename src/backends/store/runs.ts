import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { UsageError } from "../../core/errors.js";
import { deleteUnused, diskBytes, emptyFreed, type Freed, runsRoot } from "./discard.js";
import type { FileUsers } from "./references.js";

/**
 * Fine-tune run folders ($SLM_HOME/runs/<name>/) as the store sees them: a running `slm finetune`
 * holds its folder's lock for the whole run; a folder that no process holds and no registered model
 * names (its lineage names the run folder, the PEFT adapter and merged weights in it) is abandoned,
 * and may be discarded.
 */
export interface AbandonedRun {
  /** The run's name (the model it was to register), which `slm rm` takes. */
  name: string;
  path: string;
  bytes: number;
  /** It saved a checkpoint: `slm finetune … --resume` could continue it. */
  resumable: boolean;
  /** It finished, and its model was removed since. */
  finished: boolean;
}

const lockKey = (runDir: string) => `run:${path.resolve(runDir)}`;
// Imported when needed: node:crypto behind it costs `slm list` ~5 ms, and most homes have no runs.
const locks = () => import("../../core/lock.js");

/** Takes a run folder for a fine-tune; refuses when another slm process is running in it. */
export async function holdRunFolder(runDir: string, name: string): Promise<() => Promise<void>> {
  const release = await (await locks()).tryHoldLock(lockKey(runDir));
  if (!release) throw new UsageError(`Another slm process is fine-tuning ${name} right now (${runDir}).`, { hint: "Wait for it to finish, or choose another --out name." });
  return release;
}

function runFacts(dir: string): { resumable: boolean; finished: boolean } {
  const ckpts = path.join(dir, "checkpoints");
  const resumable = existsSync(ckpts) && readdirSync(ckpts).some((d) => /^step-\d+$/.test(d));
  let finished = false;
  try {
    finished = !!(JSON.parse(readFileSync(path.join(dir, "run.json"), "utf8")) as { finishedAt?: string }).finishedAt;
  } catch {
    // no run.json yet, or a broken one: not finished
  }
  return { resumable, finished };
}

export async function abandonedRuns(users: FileUsers): Promise<AbandonedRun[]> {
  let names: string[];
  try {
    names = readdirSync(runsRoot());
  } catch {
    return [];
  }
  const out: AbandonedRun[] = [];
  for (const name of names.sort()) {
    const dir = path.join(runsRoot(), name);
    if (users.inUse(dir) || (await (await locks()).isLockHeld(lockKey(dir)))) continue;
    out.push({ name, path: dir, bytes: diskBytes(dir), ...runFacts(dir) });
  }
  return out;
}

/** Deletes an abandoned run folder, holding its lock meanwhile so no fine-tune starts in it. */
export async function discardRun(run: AbandonedRun, users: FileUsers): Promise<Freed> {
  const release = await (await locks()).tryHoldLock(lockKey(run.path));
  if (!release) throw new UsageError(`The fine-tune run ${run.name} started again meanwhile; it was not removed.`);
  try {
    const out = emptyFreed();
    deleteUnused(run.path, users, out);
    return out;
  } finally {
    await release();
  }
}
