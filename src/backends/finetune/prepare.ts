import { cpSync, writeFileSync } from "node:fs";
import path from "node:path";
import writeFileAtomic from "write-file-atomic";
import { UsageError } from "../../core/errors.js";
import type { BackendContext } from "../../core/events.js";
import type { DatasetFormat } from "../../core/datasets/formats.js";
import { recipePath } from "../python/recipe.js";
import { holdRunFolder } from "../store/runs.js";
import { setUpRun } from "./finetune.js";
import type { DistillOrigin, FinetuneSettings } from "./options.js";
import type { FinetunePlan } from "./plan.js";
import type { DataSummary } from "./summary.js";

/**
 * `slm finetune … --prepare`: a run's folder made ready for a launcher other than slm's (torchrun across
 * machines, `srun torchrun` under SLURM). The folder holds the normalised data, the recipe's config, a copy
 * of the recipe (so a node needs Python with torch, transformers and peft, not slm) and prepared.json: what
 * `slm finetune --register RUN_DIR` needs to register the adapter the launched run trains.
 */
export const PREPARED_FILE = "prepared.json";
export const CONFIG_FILE = "config.json";
export const RECIPE_DIR = "recipe";

export interface DatasetRef {
  file: string;
  sha256: string;
  format: DatasetFormat;
  examples: number;
}

export interface PreparedRecord {
  version: 1;
  name: string;
  mergedName: string | null;
  base: { name: string; from: string; hf: string; /** A registered GGUF used as the base; null: base-f16.gguf in the folder. */ registered: string | null };
  settings: FinetuneSettings;
  train: DatasetRef;
  eval: DatasetRef | null;
  valSplit: number | null;
  /** Set when `slm distill` prepared it: the lineage then says "distill". */
  distill: DistillOrigin | null;
  data: DataSummary;
  preparedAt: string;
}

export interface PreparedRun {
  name: string;
  runDir: string;
  config: string;
  recipe: string;
  /** The base's HF folder: every node reads it at this path. */
  hf: string;
  /** torchrun's arguments after `torchrun`, for one node of two; <…> marks what the user fills in. */
  torchrun: string[];
}

export async function prepareFinetune(plan: FinetunePlan, ctx: BackendContext = {}): Promise<PreparedRun> {
  if (plan.request.resume) throw new UsageError("--prepare makes a new run folder; it does not resume one.", { hint: "Resume a launched run by adding --resume to its torchrun command." });
  if (plan.request.gpus !== undefined) throw new UsageError("--gpus does not apply to --prepare: the launcher decides the processes.", { hint: "Give torchrun --nnodes and --nproc-per-node (one process per GPU) instead." });
  const release = await holdRunFolder(plan.runDir, plan.name);
  try {
    const run = await setUpRun(plan, ctx);
    const recipeDir = path.join(plan.runDir, RECIPE_DIR);
    const script = recipePath("finetune_lora.py");
    cpSync(script, path.join(recipeDir, path.basename(script)));
    cpSync(path.join(path.dirname(script), "slm_recipes"), path.join(recipeDir, "slm_recipes"), { recursive: true, filter: (src) => !src.includes("__pycache__") });
    const config = path.join(plan.runDir, CONFIG_FILE);
    writeFileSync(config, JSON.stringify(run.config, null, 2) + "\n");
    const ref = (d: FinetunePlan["train"], count: number): DatasetRef => ({ file: d.file, sha256: d.sha256, format: d.format, examples: count });
    const record: PreparedRecord = {
      version: 1,
      name: plan.name,
      mergedName: plan.mergedName ?? null,
      base: { name: plan.base.name, from: plan.base.from, hf: run.hf, registered: plan.base.gguf?.name ?? null },
      settings: plan.settings,
      train: ref(plan.train, run.data.train.count),
      eval: plan.eval ? ref(plan.eval, run.data.eval?.count ?? plan.eval.examples.length) : null,
      valSplit: plan.request.valSplit ?? null,
      distill: plan.request.distill ?? null,
      data: run.data,
      preparedAt: new Date().toISOString(),
    };
    writeFileAtomic.sync(path.join(plan.runDir, PREPARED_FILE), JSON.stringify(record, null, 2) + "\n");
    const recipe = path.join(recipeDir, "finetune_lora.py");
    return {
      name: plan.name,
      runDir: plan.runDir,
      config,
      recipe,
      hf: run.hf,
      torchrun: ["--nnodes", "2", "--nproc-per-node", "<GPUs per node>", "--node-rank", "<0 or 1>", "--master-addr", "<address of node 0>", "--master-port", "29500", recipe, "--config", config],
    };
  } finally {
    await release();
  }
}
