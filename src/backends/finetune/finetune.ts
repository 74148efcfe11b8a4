import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { toJsonl } from "../../core/datasets/load.js";
import { CancelledError, UsageError } from "../../core/errors.js";
import { withStep, type BackendContext } from "../../core/events.js";
import { type ConvertEnv, convertHfToGguf, prepareConvert } from "../convert/convert.js";
import { inspectHfFolder } from "../convert/hfFolder.js";
import { readGgufSummary } from "../gguf/summary.js";
import { pull } from "../hub/pull.js";
import { type PythonEnv, requirePythonModules, resolvePython } from "../python/env.js";
import { runRecipe } from "../python/recipe.js";
import { probeStack } from "../python/stack.js";
import { removeUnused } from "../store/cleanup.js";
import { holdRunFolder } from "../store/runs.js";
import type { ModelEntry } from "../store/types.js";
import { type RecipeConfig, type RecipeResult, recipeConfig } from "./config.js";
import { DEFAULTS } from "./options.js";
import type { FinetunePlan } from "./plan.js";
import { convertAndRegister } from "./outputs.js";
import { type RunRecord, checkResume, hasCheckpoint, readRunRecord, writeRunRecord } from "./run.js";
import { type DataSummary, chooseTemplate, summariseData, usesChat } from "./summary.js";
import type { ChatTemplate } from "./template.js";

export interface FinetuneResult {
  model: ModelEntry;
  merged: ModelEntry | null;
  runDir: string;
  /** The PEFT adapter folder the recipe wrote (safetensors + config); null after --full. */
  peftAdapter: string | null;
  /** null after --full, whose registered GGUF is the whole model. */
  adapterGguf: string | null;
  /** After --full: the trained HF model folder in the run's folder. */
  modelDir: string | null;
  data: DataSummary;
  training: RecipeResult;
  seconds: number;
}

/** What the recipes import; bitsandbytes only for 4-bit QLoRA. */
export function recipeModules(qlora: boolean): string[] {
  return ["torch", "transformers", "peft", "accelerate", "safetensors", ...(qlora ? ["bitsandbytes"] : [])];
}

/**
 * Trains a LoRA adapter and registers `<base>+<name>` (base GGUF + adapter GGUF); with --full, trains
 * every weight and registers `<base>+<name>` as an F16 GGUF of its own. In order: the data
 * summary when a base GGUF is at hand, the Python check, HF weights (pulled if needed), the base GGUF
 * (converted if needed: early, so an unsupported architecture fails before training), the recipe,
 * the adapter's conversion, registration. Ctrl+C lets the recipe save a checkpoint for --resume.
 * The run holds its folder's lock throughout: `slm rm` and `slm list` tell it from an abandoned one.
 */
export async function runFinetune(plan: FinetunePlan, ctx: BackendContext = {}): Promise<FinetuneResult> {
  const release = await holdRunFolder(plan.runDir, plan.name);
  try {
    return await finetuneHeld(plan, ctx);
  } finally {
    await release();
  }
}

async function finetuneHeld(plan: FinetunePlan, ctx: BackendContext): Promise<FinetuneResult> {
  const started = performance.now();
  const run = await setUpRun(plan, ctx);
  return await cleanUpOnFailure(plan.runDir, async () => {
    const training = await train(plan, run.config, run.python, ctx);
    const registered = await convertAndRegister(plan, { hf: run.hf, gguf: run.gguf, training, data: run.data }, ctx);
    const record = readRunRecord(plan.runDir);
    if (record) writeRunRecord(plan.runDir, { ...record, finishedAt: new Date().toISOString() });
    return { ...registered, runDir: plan.runDir, peftAdapter: training.adapter_dir, modelDir: training.model_dir ?? null, data: run.data, training, seconds: (performance.now() - started) / 1000 };
  });
}

/** A run's folder made ready for the recipe: what training needs, and what registration needs after it. */
export interface RunSetUp {
  python: PythonEnv;
  /** The base's HF folder. */
  hf: string;
  /** The base GGUF: a registered model's file, or converted into the run's folder. */
  gguf: string;
  data: DataSummary;
  config: RecipeConfig;
}

/**
 * Everything before training: the data summary when a base GGUF is at hand, the Python check, HF weights
 * (pulled if needed), the base GGUF (converted if needed: early, so an unsupported architecture fails
 * before training), the normalised data and run.json. `slm finetune --prepare` stops here.
 */
export async function setUpRun(plan: FinetunePlan, ctx: BackendContext): Promise<RunSetUp> {
  const s = plan.settings;
  let hf = plan.base.hf;
  const registeredGguf = plan.base.gguf?.path;
  const maxSeqLen = (context: number | undefined) => s.maxSeqLen ?? Math.min(DEFAULTS.maxSeqLen, context ?? DEFAULTS.maxSeqLen);
  let data: DataSummary | undefined;
  // A registered GGUF needs neither Python nor a download for the summary: bad data shows up first.
  if (registeredGguf) {
    const summary = await readGgufSummary(registeredGguf);
    data = await summariseData(plan, registeredGguf, chooseTemplate(registeredGguf, hf, ctx), maxSeqLen(summary.contextLength), ctx);
  }
  let convertEnv: ConvertEnv | undefined;
  const python = await withStep(ctx, "python", "Checking the Python environment", async () => {
    const env = await resolvePython();
    await requirePythonModules(env, recipeModules(s.qlora), "Fine-tuning", { signal: ctx.signal });
    if (s.gpus > 1 && s.device !== "cpu") await checkGpus(env, s.gpus, ctx.signal);
    if (hf && !registeredGguf) convertEnv = await prepareConvert(hf, ctx);
    return env;
  }, (env) => env.python);
  if (!hf) {
    const pulled = await pull({ ref: plan.base.pull!, format: "hf" }, ctx);
    hf = pulled.model.path;
    if (!registeredGguf) convertEnv = await prepareConvert(hf, ctx);
  }
  const hfDir = hf;

  if (plan.runState === "stale") removeUnused(plan.runDir);
  mkdirSync(plan.runDir, { recursive: true });
  return await cleanUpOnFailure(plan.runDir, async () => {
    const gguf = registeredGguf ?? (await baseGguf(plan.runDir, hfDir, convertEnv, ctx));
    const context = inspectHfFolder(hfDir).contextLength ?? (await readGgufSummary(gguf)).contextLength;
    const template = chooseTemplate(gguf, hfDir, registeredGguf ? {} : ctx);
    const summary = data ?? (await summariseData(plan, gguf, template, maxSeqLen(context), ctx));
    const config = writeRunInputs(plan, hfDir, template, summary.maxSeqLen);
    return { python, hf: hfDir, gguf, data: summary, config };
  });
}

/** Without a checkpoint there is nothing to resume: a failed run leaves no folder behind. */
async function cleanUpOnFailure<T>(runDir: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (!hasCheckpoint(runDir) && !existsSync(path.join(runDir, "adapter")) && !existsSync(path.join(runDir, "model"))) removeUnused(runDir);
    throw err;
  }
}

/** The base converted to F16 GGUF inside the run's folder, once (a resumed run finds it there). */
async function baseGguf(runDir: string, hf: string, env: ConvertEnv | undefined, ctx: BackendContext): Promise<string> {
  const out = path.join(runDir, "base-f16.gguf");
  if (existsSync(out)) {
    await readGgufSummary(out);
    return out;
  }
  await convertHfToGguf({ input: hf, outtype: "f16", out }, ctx, env);
  return out;
}

/** Normalised data files and run.json; for --resume, the check that nothing changed since the first start. */
function writeRunInputs(plan: FinetunePlan, hf: string, template: ChatTemplate | undefined, maxSeqLen: number): RecipeConfig {
  const dataDir = path.join(plan.runDir, "data");
  mkdirSync(dataDir, { recursive: true });
  const trainFile = path.join(dataDir, "train.jsonl");
  const evalFile = plan.eval ? path.join(dataDir, "eval.jsonl") : null;
  const config = recipeConfig(plan.settings, {
    hf,
    trainFile,
    evalFile,
    runDir: plan.runDir,
    chatTemplate: template && usesChat(plan) ? template.template : null,
    maxSeqLen,
    resume: plan.runState === "resume",
    merge: !!plan.request.merge,
  });
  const record: RunRecord = {
    version: 1,
    name: plan.name,
    config: { ...config, resume: false },
    data: {
      train: { file: plan.train.file, sha256: plan.train.sha256 },
      eval: plan.eval && plan.request.evalData !== undefined ? { file: plan.eval.file, sha256: plan.eval.sha256 } : null,
      valSplit: plan.request.valSplit ?? null,
    },
    createdAt: new Date().toISOString(),
  };
  if (plan.runState === "resume") {
    const before = readRunRecord(plan.runDir);
    checkResume(before, record);
    if (before) record.createdAt = before.createdAt;
  }
  writeFileSync(trainFile, toJsonl(plan.train.examples));
  if (evalFile) writeFileSync(evalFile, toJsonl(plan.eval!.examples));
  writeRunRecord(plan.runDir, record);
  return config;
}

/** --gpus N needs N GPUs that torch sees: said before a conversion or a download, not by the recipe later. */
async function checkGpus(env: PythonEnv, gpus: number, signal: AbortSignal | undefined): Promise<void> {
  const devices = (await probeStack(env, { signal })).torch?.devices ?? [];
  if (devices.length >= gpus) return;
  throw new UsageError(`--gpus ${gpus} needs ${gpus} CUDA GPUs; torch sees ${devices.length}${devices.length ? ` (${devices.join(", ")})` : ""}.`, {
    hint: devices.length > 1 ? `Use --gpus ${devices.length}, or --device cpu to run the processes on the CPU.` : "Drop --gpus, or add --device cpu to run the processes on the CPU.",
  });
}

async function train(plan: FinetunePlan, config: RecipeConfig, python: PythonEnv, ctx: BackendContext): Promise<RecipeResult> {
  try {
    return await runRecipe<RecipeResult>({ recipe: "finetune_lora.py", config, python, env: torchThreads() }, ctx);
  } catch (err) {
    if (err instanceof CancelledError && hasCheckpoint(plan.runDir)) {
      throw new CancelledError(`Cancelled. The run saved a checkpoint in ${path.join(plan.runDir, "checkpoints")}.`, { hint: "Continue it with the same command plus --resume." });
    }
    throw err;
  }
}

/**
 * SLM_THREADS (the cap `slm run` and `slm quantize` honour) reaches torch's CPU thread pool too: torch
 * starts one thread per core, and its OpenMP threads wait on each other like llama.cpp's, so a core
 * taken by another process stalls every step (fixture, batch 64, 2 shared cores: 0.27 s per step with
 * 2 threads on idle cores, 1.7 s while other work ran). An OMP_NUM_THREADS the user set wins.
 */
function torchThreads(): Record<string, string> | undefined {
  const n = Number(process.env.SLM_THREADS);
  if (process.env.OMP_NUM_THREADS || !Number.isInteger(n) || n <= 0) return undefined;
  return { OMP_NUM_THREADS: String(n) };
}
