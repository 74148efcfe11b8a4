import { statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { SlmError } from "../../core/errors.js";
import { type BackendContext, type SlmEvent, withStep } from "../../core/events.js";
import { ensureFreeSpace } from "../../core/storage.js";
import { type PythonEnv, requirePythonModules, resolvePython } from "../python/env.js";
import { runRecipe } from "../python/recipe.js";
import { removeUnused } from "../store/cleanup.js";
import { derivedWorkDir, installDerived, modelsDir } from "../store/derived.js";
import { folderFiles } from "../store/folderInfo.js";
import type { LineageStep, ModelEntry } from "../store/types.js";
import type { PrunePlan } from "./plan.js";

/** What recipes/prune.py reports (docs/prune.md, "Recipe protocol"). */
export interface PruneRecipeResult {
  output_dir: string;
  method: "layers" | "ffn";
  layers_before: number;
  layers_after: number;
  intermediate_before: number | null;
  intermediate_after: number | null;
  /** layers: the dropped blocks (0-based, in the unpruned model's numbering) and every block's influence. */
  removed_layers?: number[];
  block_influence?: number[];
  /** ffn: channels removed in all blocks (prune.json in the folder lists which). */
  removed_channels?: number;
  k_quant_friendly?: boolean;
  heal?: { mode: "data" | "distill"; steps: number; lr: number; batch_size: number; examples: number; first_loss: number; last_loss: number; seconds: number };
  architecture: string;
  model_type: string | null;
  parameters_before: number;
  parameters: number;
  calibration_tokens: number;
  samples: number;
  seq_len: number;
  device: string;
  size: number;
  /** Seconds per phase: load, calibration, measure, cut, heal, write. */
  phases: Record<string, number>;
}

export interface PruneResult {
  model: ModelEntry;
  source: { name: string; path: string };
  recipe: PruneRecipeResult;
  seconds: number;
}

export const RECIPE_MODULES = ["torch", "transformers", "safetensors"];

async function checkPython(ctx: BackendContext): Promise<PythonEnv> {
  return withStep(ctx, "python", "Checking the Python environment", async () => {
    const env = await resolvePython();
    await requirePythonModules(env, RECIPE_MODULES, "pruning", { signal: ctx.signal });
    return env;
  }, (env) => env.python);
}

/** The recipe's config (docs/prune.md, "Recipe protocol"), with the data files written into `scratch`. */
export function recipeConfig(plan: PrunePlan, outputDir: string, scratch: string): Record<string, unknown> {
  const write = (name: string, d: { info: { format: string }; content: string }) => {
    const file = path.join(scratch, `${name}.${d.info.format === "text" ? "txt" : "jsonl"}`);
    writeFileSync(file, d.content);
    return { file, format: d.info.format };
  };
  const h = plan.heal;
  return {
    model: path.resolve(plan.folder.dir),
    output_dir: outputDir,
    layers: plan.request.layers ?? null,
    ffn_size: plan.ffnSize ?? null,
    calibration: write("calibration", plan.calibration),
    samples: plan.samples,
    seq_len: plan.seqLen,
    heal: h ? { mode: h.mode, ...(h.mode === "data" ? { data: write("heal", h.data) } : {}), steps: plan.healSteps, lr: plan.healLr } : null,
    device: plan.request.device ?? "auto",
    threads: plan.threads,
  };
}

/** Step details that name slm's scratch copies read as the files the user gave. */
function asTheUserSees(ctx: BackendContext, shown: ReadonlyMap<string, string>): BackendContext {
  const sink = ctx.onEvent;
  if (!sink) return ctx;
  return { ...ctx, onEvent: (e: SlmEvent) => sink(e.type === "step" && e.detail !== undefined && shown.has(e.detail) ? { ...e, detail: shown.get(e.detail) } : e) };
}

/** What was removed and why: the lineage step `slm info` shows. */
export function pruneStep(plan: PrunePlan, r: PruneRecipeResult): LineageStep {
  const c = plan.calibration.info;
  const cut = r.method === "layers"
    ? { criterion: "block influence (ShortGPT): 1 - mean cos(block input, block output)", removedLayers: r.removed_layers, blockInfluence: r.block_influence, layers: `${r.layers_before} → ${r.layers_after}` }
    : { criterion: "FFN channel importance (Minitron): L2 over windows of mean |down_proj input|", ratio: plan.request.ffn, intermediateSize: `${r.intermediate_before} → ${r.intermediate_after}`, removedChannels: r.removed_channels, channelsFile: "prune.json" };
  return {
    from: plan.source.from,
    method: r.method === "layers" ? "prune-layers" : "prune-ffn",
    parameters: {
      ...cut,
      calibration: { file: plan.calibration.shipped ? `slm's ${path.basename(c.file)}` : c.file, format: c.format, sha256: c.sha256, tokens: r.calibration_tokens, samples: r.samples, seqLen: r.seq_len },
      ...(r.heal ? { heal: { mode: r.heal.mode, ...(plan.heal?.mode === "data" ? { file: plan.heal.data.info.file, sha256: plan.heal.data.info.sha256 } : {}), steps: r.heal.steps, lr: r.heal.lr, batchSize: r.heal.batch_size, loss: [r.heal.first_loss, r.heal.last_loss] } } : {}),
      parameters: [r.parameters_before, r.parameters],
      device: r.device,
      phases: r.phases,
    },
    at: new Date().toISOString(),
  };
}

/**
 * Prunes into a work folder under $SLM_HOME/models, which becomes `<name>/` and a registry entry (format
 * hf) by one rename under the registry's lock: Ctrl+C, a failing recipe or a full disk leave neither.
 */
export async function runPrune(plan: PrunePlan, ctx: BackendContext = {}): Promise<PruneResult> {
  const started = performance.now();
  const python = await checkPython(ctx);
  const sourceBytes = plan.folder.weights.reduce((a, f) => a + statSync(f).size, 0);
  ensureFreeSpace(modelsDir(), sourceBytes * 1.1, `the pruned copy of ${plan.source.source.name}`);
  const work = derivedWorkDir();
  const scratch = derivedWorkDir();
  try {
    const config = recipeConfig(plan, work, scratch);
    const shown = new Map<string, string>([[(config.calibration as { file: string }).file, plan.calibration.shipped ? "slm's calibration text" : plan.calibration.info.file]]);
    if (plan.heal?.mode === "data") shown.set(((config.heal as { data: { file: string } }).data).file, plan.heal.data.info.file);
    const env = plan.threads && !process.env.OMP_NUM_THREADS ? { OMP_NUM_THREADS: String(plan.threads) } : undefined;
    const r = await runRecipe<PruneRecipeResult>({ recipe: "prune.py", config, python, env }, asTheUserSees(ctx, shown));
    if (r.layers_after !== plan.blocks - (plan.request.layers ?? 0) || (plan.ffnSize !== undefined && r.intermediate_after !== plan.ffnSize)) {
      throw new SlmError(`prune.py wrote ${r.layers_after} blocks and FFN width ${r.intermediate_after}, not what was asked.`, { hint: "This is a bug in slm: please report it with the output of --verbose." });
    }
    const finalDir = path.join(modelsDir(), plan.name);
    const files = folderFiles(work).map((f) => ({ ...f, path: path.join(finalDir, path.relative(work, f.path)) }));
    const entry: ModelEntry = {
      name: plan.name,
      format: "hf",
      path: finalDir,
      files,
      source: { type: "derived" },
      size: files.reduce((a, f) => a + f.size, 0),
      parameters: r.parameters,
      contextLength: plan.folder.contextLength,
      architecture: plan.folder.architecture,
      lineage: [pruneStep(plan, r), ...plan.source.source.lineage],
      createdAt: new Date().toISOString(),
    };
    await withStep(ctx, "prune:register", `Registering ${plan.name}`, () => installDerived(work, entry), () => finalDir);
    return { model: entry, source: { name: plan.source.source.name, path: plan.source.source.path }, recipe: r, seconds: (performance.now() - started) / 1000 };
  } finally {
    removeUnused(scratch);
    // installDerived moved it on success; anything left is a failed or cancelled run.
    removeUnused(work);
  }
}
