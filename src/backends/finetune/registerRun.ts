import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { NotFoundError, UsageError } from "../../core/errors.js";
import type { BackendContext } from "../../core/events.js";
import { assertFreeName } from "../store/derived.js";
import { getModel } from "../store/registry.js";
import { holdRunFolder } from "../store/runs.js";
import type { ModelEntry } from "../store/types.js";
import type { RecipeResult } from "./config.js";
import { convertAndRegister } from "./outputs.js";
import type { FinetunePlan } from "./plan.js";
import { CONFIG_FILE, type DatasetRef, PREPARED_FILE, type PreparedRecord } from "./prepare.js";
import { readRunRecord, writeRunRecord } from "./run.js";

/** Written by recipes/finetune_lora.py (rank 0) when training ends. */
const RESULT_FILE = "result.json";

export interface RegisteredRun {
  model: ModelEntry;
  merged: ModelEntry | null;
  runDir: string;
  /** null for a --full run, registered as a whole model. */
  adapterGguf: string | null;
  training: RecipeResult;
}

function readJson<T>(file: string, what: string): T {
  try {
    return JSON.parse(readFileSync(file, "utf8")) as T;
  } catch (err) {
    throw new UsageError(`${file} is unreadable (${(err as Error).message}).`, { hint: `It is ${what}.` });
  }
}

/** The newest step-N checkpoint's name, for the hint of a run that has not finished. */
function newestCheckpoint(runDir: string): string | undefined {
  const dir = path.join(runDir, "checkpoints");
  if (!existsSync(dir)) return undefined;
  const steps = readdirSync(dir).map((d) => /^step-(\d+)$/.exec(d)?.[1]).filter((s): s is string => s !== undefined).map(Number);
  return steps.length ? `step-${Math.max(...steps)}` : undefined;
}

/**
 * `slm finetune --register RUN_DIR`: registers `<base>+<name>` from a folder that `--prepare` made and a
 * launcher such as torchrun trained in (here, or elsewhere and copied back: paths are taken relative to
 * RUN_DIR). Everything is checked before anything is converted, so an incomplete folder registers nothing.
 */
export async function registerPreparedRun(dir: string, ctx: BackendContext = {}): Promise<RegisteredRun> {
  const runDir = path.resolve(dir);
  if (!existsSync(runDir) || !statSync(runDir).isDirectory()) throw new NotFoundError(`No run folder at ${runDir}.`);
  const preparedFile = path.join(runDir, PREPARED_FILE);
  if (!existsSync(preparedFile)) {
    throw new UsageError(`${runDir} is not a run folder made by \`slm finetune --prepare\` (it has no ${PREPARED_FILE}).`, { hint: "Make one with slm finetune <model> --lora FILE --prepare, and train in it with the torchrun command it prints." });
  }
  const p = readJson<PreparedRecord>(preparedFile, "written by slm finetune --prepare");
  if (readRunRecord(runDir)?.finishedAt) throw new UsageError(`The run in ${runDir} is registered already (as ${p.name}).`);
  // A LoRA run leaves the PEFT adapter, a --full run the whole HF model.
  const full = p.settings.full === true;
  const trained = path.join(runDir, full ? "model" : "adapter");
  const resultFile = path.join(runDir, RESULT_FILE);
  if (!existsSync(path.join(trained, full ? "config.json" : "adapter_model.safetensors")) || !existsSync(resultFile)) {
    const ckpt = newestCheckpoint(runDir);
    const missing = [existsSync(trained) ? "" : `no ${path.basename(trained)}/ folder`, existsSync(resultFile) ? "" : `no ${RESULT_FILE}`].filter(Boolean);
    throw new UsageError(`The run in ${runDir} has not finished: ${missing.join(", ")} (rank 0 writes both when training ends).`, {
      hint: ckpt ? `Its last checkpoint is checkpoints/${ckpt}: run the same torchrun command with --resume added to finish it.` : `Train it first: torchrun … ${path.join(runDir, "recipe", "finetune_lora.py")} --config ${path.join(runDir, CONFIG_FILE)} (see docs/finetune.md, "Across machines").`,
    });
  }
  const training = readJson<RecipeResult>(resultFile, "the recipe's result");
  // Registration reads the base's config.json (the adapter's conversion) and its GGUF.
  if (!existsSync(path.join(p.base.hf, "config.json"))) {
    throw new NotFoundError(`The base model's HF folder ${p.base.hf} is not on this machine.`, { hint: "Register where the run was prepared, or put the base at that path." });
  }
  const baseEntry = p.base.registered ? getModel(p.base.registered) : undefined;
  if (p.base.registered && !baseEntry) throw new NotFoundError(`The base GGUF ${p.base.registered} the run was prepared with is no longer registered.`, { hint: `Pull or register ${p.base.registered} again.` });
  const gguf = baseEntry?.path ?? path.join(runDir, "base-f16.gguf");
  if (!existsSync(gguf)) throw new NotFoundError(`The base GGUF ${gguf} is missing.`, { hint: "Prepare the run again (slm finetune … --prepare) and copy the trained adapter/ and result.json into it." });
  const merged = path.join(runDir, "merged");
  if (p.mergedName && !existsSync(path.join(merged, "config.json"))) throw new UsageError(`The run was prepared with --merge but ${merged} holds no merged model.`);
  assertFreeName(p.name);
  if (p.mergedName) assertFreeName(p.mergedName);

  const release = await holdRunFolder(runDir, p.name);
  try {
    // The trained folders as they are here: the result names them as they were on rank 0's machine.
    const local: RecipeResult = { ...training, adapter_dir: full ? null : trained, model_dir: full ? trained : null, merged_dir: p.mergedName ? merged : null };
    const r = await convertAndRegister(planOf(p, runDir, baseEntry), { hf: p.base.hf, gguf, training: local, data: p.data }, ctx);
    const record = readRunRecord(runDir);
    if (record) writeRunRecord(runDir, { ...record, finishedAt: new Date().toISOString() });
    return { ...r, runDir, training: local };
  } finally {
    await release();
  }
}

/** The plan the run was prepared from, as far as registration reads it (the examples themselves are in data/). */
function planOf(p: PreparedRecord, runDir: string, baseEntry: ModelEntry | undefined): FinetunePlan {
  const dataset = (d: DatasetRef) => ({ file: d.file, sha256: d.sha256, format: d.format, examples: [] });
  return {
    request: { ref: p.base.from, data: p.train.file, valSplit: p.valSplit ?? undefined, merge: p.mergedName !== null, full: p.settings.full, distill: p.distill ?? undefined },
    settings: p.settings,
    base: { name: p.base.name, from: p.base.from, hf: p.base.hf, gguf: baseEntry },
    name: p.name,
    mergedName: p.mergedName ?? undefined,
    runDir,
    runState: "resume",
    train: dataset(p.train),
    eval: p.eval ? dataset(p.eval) : undefined,
  };
}
