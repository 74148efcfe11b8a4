import { existsSync, renameSync, rmSync } from "node:fs";
import path from "node:path";
import { SlmError } from "../../core/errors.js";
import { withStep, type BackendContext } from "../../core/events.js";
import { convertPeftAdapter } from "../adapters/convert.js";
import { convertHfToGguf } from "../convert/convert.js";
import { derivedWorkDir } from "../store/derived.js";
import { removeUnused } from "../store/cleanup.js";
import type { LineageStep, ModelEntry } from "../store/types.js";
import type { RecipeResult } from "./config.js";
import type { FinetuneSettings } from "./options.js";
import type { FinetunePlan } from "./plan.js";
import { registerFinetune, registerWholeModel } from "./register.js";
import type { DataSummary } from "./summary.js";

export interface Trained {
  hf: string;
  gguf: string;
  training: RecipeResult;
  data: DataSummary;
}

export interface Registered {
  model: ModelEntry;
  merged: ModelEntry | null;
  /** null for a full fine-tune: its GGUF is the whole model. */
  adapterGguf: string | null;
}

/** The adapter (and merged model) to GGUF in work folders, then both registered at once; or, after --full, the model. */
export async function convertAndRegister(plan: FinetunePlan, t: Trained, ctx: BackendContext): Promise<Registered> {
  if (plan.settings.full) return convertFull(plan, t, ctx);
  const adapterDir = t.training.adapter_dir;
  if (!adapterDir) throw new SlmError("The recipe reported no adapter folder.", { hint: "Run again with --verbose to see the recipe's output." });
  const work = derivedWorkDir();
  const mergedWork = plan.mergedName ? derivedWorkDir() : undefined;
  const convertedBase = t.gguf.startsWith(plan.runDir + path.sep) ? path.join(work, path.basename(t.gguf)) : undefined;
  try {
    const adapterGguf = path.join(work, "adapter.gguf");
    await withStep(ctx, "adapter-gguf", "Converting the adapter to GGUF", () => convertPeftAdapter({ adapterDir, out: adapterGguf, baseConfig: path.join(t.hf, "config.json"), baseGguf: t.gguf, name: plan.name }, ctx), (a) => `${a.tensors} tensors`);
    let mergedFile: string | undefined;
    if (mergedWork && plan.mergedName) {
      if (!t.training.merged_dir) throw new SlmError("The recipe reported no merged model although --merge was given.", { hint: "Run again with --verbose to see the recipe's output." });
      mergedFile = path.join(mergedWork, `${plan.mergedName}-f16.gguf`);
      await convertHfToGguf({ input: t.training.merged_dir, outtype: "f16", out: mergedFile, name: plan.mergedName }, ctx);
    }
    const step = lineageStep(plan, t);
    if (convertedBase) renameSync(t.gguf, convertedBase);
    const r = await withStep(ctx, "register", `Registering ${plan.name}`, () =>
      registerFinetune({
        name: plan.name,
        work,
        adapterFile: adapterGguf,
        baseFile: convertedBase ?? t.gguf,
        baseEntry: plan.base.gguf,
        step,
        merged: mergedWork && mergedFile ? { name: plan.mergedName!, work: mergedWork, file: mergedFile, step: { from: plan.name, method: "merge-lora", parameters: { mergedHf: t.training.merged_dir }, at: step.at } } : undefined,
      }),
    );
    return { ...r, adapterGguf: r.model.adapters![0]!.path };
  } catch (err) {
    // The converted base goes back to the run's folder: it took a while to make.
    if (convertedBase && existsSync(convertedBase)) renameSync(convertedBase, t.gguf);
    for (const d of [work, mergedWork]) if (d) removeUnused(d);
    throw err;
  }
}

/** A full fine-tune's HF folder to F16 GGUF, registered as a model of its own (no base file, no adapter). */
async function convertFull(plan: FinetunePlan, t: Trained, ctx: BackendContext): Promise<Registered> {
  const modelDir = t.training.model_dir;
  if (!modelDir) throw new SlmError("The recipe reported no trained model folder although --full was given.", { hint: "Run again with --verbose to see the recipe's output." });
  const work = derivedWorkDir();
  try {
    const file = path.join(work, `${plan.name}-f16.gguf`);
    await convertHfToGguf({ input: modelDir, outtype: "f16", out: file, name: plan.name }, ctx);
    const step = lineageStep(plan, t);
    const model = await withStep(ctx, "register", `Registering ${plan.name}`, () => registerWholeModel({ name: plan.name, work, file, step, baseEntry: plan.base.gguf }));
    // The base converted into the run's folder served the data summary and the early architecture check;
    // the registered model does not use it, and it is as big as the model (about 2.5 GB for 1B weights).
    if (t.gguf.startsWith(plan.runDir + path.sep)) rmSync(t.gguf, { force: true });
    return { model, merged: null, adapterGguf: null };
  } catch (err) {
    removeUnused(work);
    throw err;
  }
}

/** How the model was made: a LoRA or full fine-tune, or (from `slm distill`) a distillation. */
function methodOf(plan: FinetunePlan): string {
  if (plan.request.distill) return "distill";
  return plan.settings.full ? "finetune-full" : "finetune-lora";
}

/**
 * The settings a lineage records: a full fine-tune trains no adapter, so the LoRA settings (defaults it
 * never used) are left out rather than recorded as if rank 16, alpha 32 had shaped the weights.
 */
export function lineageHyperparameters(s: FinetuneSettings, maxSeqLen: number): Record<string, unknown> {
  if (!s.full) return { ...s, maxSeqLen };
  const { rank: _r, alpha: _a, dropout: _d, targetModules: _t, qlora: _q, ...rest } = s;
  return { ...rest, maxSeqLen };
}

function lineageStep(plan: FinetunePlan, t: Trained): LineageStep {
  const s = plan.settings;
  const r = t.training;
  return {
    from: plan.base.from,
    method: methodOf(plan),
    parameters: {
      hf: t.hf,
      data: { file: plan.train.file, sha256: plan.train.sha256, format: plan.train.format, examples: t.data.train.count },
      eval: plan.eval ? { file: plan.eval.file, sha256: plan.eval.sha256, examples: t.data.eval?.count ?? plan.eval.examples.length, valSplit: plan.request.valSplit ?? null } : null,
      hyperparameters: lineageHyperparameters(s, t.data.maxSeqLen),
      trainLoss: r.train_loss,
      evalLoss: r.eval_loss,
      steps: r.steps,
      epochs: r.epochs,
      tokens: r.tokens,
      seconds: r.seconds,
      peftAdapter: r.adapter_dir,
      ...(s.full ? { hfModel: r.model_dir ?? null } : {}),
      ...(plan.request.distill ? { distill: plan.request.distill } : {}),
      ...(s.kdAlpha !== null ? { kd: { alpha: s.kdAlpha, ...(r.kd ?? {}) } } : {}),
      runDir: plan.runDir,
    },
    at: new Date().toISOString(),
  };
}
