import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import writeFileAtomic from "write-file-atomic";
import path from "node:path";
import { SlmError, UsageError } from "../../core/errors.js";
import { slmPaths } from "../../core/paths.js";
import type { ModelEntry } from "../store/types.js";
import { type RecipeConfig, resumeConflicts } from "./config.js";

/**
 * A run's folder, $SLM_HOME/runs/<model name>/: the normalised data, run.json (what was asked), the
 * recipe's outputs (adapter/, checkpoints/, merged/) and, for a base without a registered GGUF, the
 * base converted to GGUF. It outlives an interrupted run so that --resume can continue it.
 */
export interface RunRecord {
  version: 1;
  name: string;
  config: RecipeConfig;
  data: { train: { file: string; sha256: string }; eval: { file: string; sha256: string } | null; valSplit: number | null };
  createdAt: string;
  /** Set once the model is registered: the folder then holds a finished run, not one to resume. */
  finishedAt?: string;
}

export function runDirFor(name: string): string {
  return path.join(slmPaths().home, "runs", name);
}

/** True when the recipe saved at least one checkpoint (checkpoints/step-N/) to resume from. */
export function hasCheckpoint(runDir: string): boolean {
  const dir = path.join(runDir, "checkpoints");
  return existsSync(dir) && readdirSync(dir).some((d) => /^step-\d+$/.test(d));
}

export function readRunRecord(runDir: string): RunRecord | undefined {
  const file = path.join(runDir, "run.json");
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(readFileSync(file, "utf8")) as RunRecord;
  } catch (err) {
    throw new SlmError(`${file} is unreadable (${(err as Error).message}).`, { hint: "Remove the run's folder to start over." });
  }
}

export function writeRunRecord(runDir: string, r: RunRecord): void {
  mkdirSync(runDir, { recursive: true });
  const file = path.join(runDir, "run.json");
  writeFileAtomic.sync(file, JSON.stringify(r, null, 2) + "\n");
}

/** Whether a run may start (fresh) or continue (--resume) in this folder; throws when it may not. */
export function checkRunDir(runDir: string, name: string, resume: boolean): "fresh" | "resume" | "stale" {
  const exists = existsSync(runDir);
  // A folder made by --prepare belongs to a launcher such as torchrun, which may be training in it now.
  if (exists && existsSync(path.join(runDir, "prepared.json")) && !readRunRecord(runDir)?.finishedAt) {
    throw new UsageError(`${name} is prepared for torchrun in ${runDir}; slm does not train in that folder itself.`, { hint: `Continue it with its torchrun command (plus --resume), register it with \`slm finetune --register ${runDir}\`, or \`slm rm ${name}\` to discard it.` });
  }
  if (resume) {
    if (!exists || !hasCheckpoint(runDir) || readRunRecord(runDir)?.finishedAt) {
      throw new UsageError(`Nothing to resume: no interrupted run named ${name} has a checkpoint${exists ? "" : ` (${runDir} does not exist)`}.`, { hint: "Run without --resume to start it." });
    }
    return "resume";
  }
  if (!exists) return "fresh";
  if (readRunRecord(runDir)?.finishedAt) {
    throw new UsageError(`A finished run named ${name} is in ${runDir} (its model was removed since).`, { hint: `Choose another --out name, or \`slm rm ${name}\` to discard that folder (it holds the PEFT adapter and the checkpoints) and train again.` });
  }
  if (hasCheckpoint(runDir)) {
    throw new UsageError(`An interrupted run named ${name} is in ${runDir}.`, { hint: `Continue it with the same command plus --resume, choose another --out name, or \`slm rm ${name}\` to discard it and start over.` });
  }
  // A run that failed before its first checkpoint: nothing in it is worth keeping.
  return "stale";
}

/** Refuses to resume with data or settings that differ from the run being continued. */
export function checkResume(before: RunRecord | undefined, now: RunRecord): void {
  if (!before) return;
  const problems = resumeConflicts(before.config, now.config);
  if (before.data.train.sha256 !== now.data.train.sha256) problems.unshift(`the training data changed (${now.data.train.file})`);
  if ((before.data.eval?.sha256 ?? null) !== (now.data.eval?.sha256 ?? null)) problems.unshift("the evaluation data (--eval-data) changed");
  if (before.data.valSplit !== now.data.valSplit) problems.unshift(`--val-split: ${before.data.valSplit} then, ${now.data.valSplit} now`);
  if (problems.length > 0) {
    throw new UsageError(`--resume continues ${now.name} with what it started with, but:\n  ${problems.join("\n  ")}`, { hint: "Resume with the original options, or start a new run with another --out name." });
  }
}

/**
 * The trained HF folder of a registered full fine-tune (`--full`, or a distillation with it): its own
 * lineage step names it (`hfModel`, in its run folder). Undefined for other models or once it is gone.
 */
export function fullWeightsOf(entry: ModelEntry): string | undefined {
  const dir = entry.adapters?.length ? undefined : entry.lineage[0]?.parameters.hfModel;
  return typeof dir === "string" && existsSync(path.join(dir, "config.json")) ? dir : undefined;
}
