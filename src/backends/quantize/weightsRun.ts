import { readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { SlmError, UsageError } from "../../core/errors.js";
import { type BackendContext, type SlmEvent, withStep } from "../../core/events.js";
import { ensureFreeSpace } from "../../core/storage.js";
import { folderFiles } from "../store/folderInfo.js";
import { type PythonEnv, requirePythonModules, resolvePython } from "../python/env.js";
import { runRecipe } from "../python/recipe.js";
import { probeStack } from "../python/stack.js";
import { removeUnused } from "../store/cleanup.js";
import { assertConvertible } from "../store/quantFolder.js";
import { derivedWorkDir, installDerived, modelsDir } from "../store/derived.js";
import type { LineageStep, ModelEntry, WeightQuantization } from "../store/types.js";
import type { WeightsPlan, WeightsSettings } from "./weights.js";

/** What recipes/quantize_hf.py reports (docs/quantize-recipes.md). */
export interface QuantizeRecipeResult {
  output_dir: string;
  method: "gptq" | "awq" | "rtn";
  output: "packed" | "scaled";
  bits: number;
  group_size: number;
  desc_act: boolean | null;
  sym: boolean | null;
  damp: number | null;
  zero_point: boolean | null;
  architecture: string;
  model_type: string;
  layers: number;
  quantized_linears: number;
  parameters: number;
  calibration_tokens: number;
  samples: number;
  seq_len: number;
  device: string;
  seconds: number;
  peak_memory_bytes: number;
  size: number;
  layer_errors?: { name: string; error: number }[];
}

export interface WeightsResult {
  model: ModelEntry;
  source: { name: string; path: string; size: number };
  recipe: QuantizeRecipeResult;
  seconds: number;
}

/** The Python modules quantize_hf.py imports. */
export const RECIPE_MODULES = ["torch", "transformers", "safetensors"];

/** slm's Python with the recipe's modules; with --device cuda, a GPU torch sees (said now, not after loading the model). */
export async function checkPython(s: WeightsSettings, ctx: BackendContext): Promise<PythonEnv> {
  return withStep(ctx, "python", "Checking the Python environment", async () => {
    const env = await resolvePython();
    await requirePythonModules(env, RECIPE_MODULES, "GPTQ/AWQ quantization", { signal: ctx.signal });
    if (s.device === "cuda" && !(await probeStack(env, { signal: ctx.signal })).torch?.gpu) {
      throw new UsageError("--device cuda: torch sees no CUDA GPU here.", { hint: "Drop --device (auto uses the CPU when there is no GPU), or install torch with CUDA: slm setup python --cuda." });
    }
    return env;
  }, (env) => env.python);
}

/** The bytes of the source's weight files. */
export function weightBytes(plan: WeightsPlan): number {
  return plan.folder.weights.reduce((a, f) => a + statSync(f).size, 0);
}

/**
 * About how big the packed checkpoint gets: the quantized linears at `bits` plus an fp16 scale and a
 * packed zero per group, the embeddings and output layer (vocab × hidden, once more unless tied) in fp16.
 */
export function packedSizeEstimate(plan: WeightsPlan): number {
  const params = plan.folder.parameters ?? weightBytes(plan) / 2;
  let embed = 0;
  try {
    const c = JSON.parse(readFileSync(path.join(plan.folder.dir, "config.json"), "utf8")) as { vocab_size?: number; hidden_size?: number; tie_word_embeddings?: boolean };
    if (c.vocab_size && c.hidden_size) embed = c.vocab_size * c.hidden_size * (c.tie_word_embeddings ? 1 : 2);
  } catch {
    // no config details: everything counts as quantized
  }
  const s = plan.settings;
  const perGroup = s.groupSize > 0 ? (16 + s.bits) / s.groupSize : 0;
  return Math.ceil(((params - embed) * (s.bits + perGroup)) / 8 + embed * 2);
}

/** The recipe's config (contract 1: recipes/quantize_hf.py). */
export function recipeConfig(plan: WeightsPlan, outputDir: string, calibrationFile: string, output: "packed" | "scaled"): Record<string, unknown> {
  const s = plan.settings;
  return {
    task: "quantize",
    model: path.resolve(plan.folder.dir),
    output_dir: outputDir,
    method: s.method,
    output,
    bits: s.bits,
    group_size: s.groupSize,
    desc_act: s.descAct,
    sym: s.sym,
    damp: s.damp,
    zero_point: s.zeroPoint,
    calibration: { file: calibrationFile, format: plan.calibration.info.format },
    samples: s.samples,
    seq_len: s.seqLen,
    device: s.device,
    threads: s.threads,
  };
}

/**
 * The recipe reports layers done at a rate of calibration tokens per second (contract 1); events that
 * do not name the rate's unit get it, so every view shows tokens/s and times the rest by layers.
 */
function withTokenRate(ctx: BackendContext): BackendContext {
  const sink = ctx.onEvent;
  if (!sink) return ctx;
  return { ...ctx, onEvent: (e: SlmEvent) => sink(e.type === "progress" && e.unit === "layers" && !e.rateUnit && e.rate !== undefined ? { ...e, rateUnit: "tokens" } : e) };
}

/** torch's CPU thread pool follows --threads / SLM_THREADS; an OMP_NUM_THREADS the user set wins. */
function threadEnv(s: WeightsSettings): Record<string, string> | undefined {
  return s.threads && !process.env.OMP_NUM_THREADS ? { OMP_NUM_THREADS: String(s.threads) } : undefined;
}

/**
 * Runs quantize_hf.py into `outputDir` with the plan's calibration data written to a scratch folder.
 * The caller owns `outputDir` (a work folder under $SLM_HOME/models) and removes it on failure.
 */
export async function runQuantizeRecipe(plan: WeightsPlan, outputDir: string, output: "packed" | "scaled", python: PythonEnv, ctx: BackendContext): Promise<QuantizeRecipeResult> {
  const scratch = derivedWorkDir();
  try {
    const file = path.join(scratch, plan.calibration.info.format === "text" ? "calibration.txt" : "calibration.jsonl");
    writeFileSync(file, plan.calibration.content);
    const config = recipeConfig(plan, outputDir, file, output);
    return await runRecipe<QuantizeRecipeResult>({ recipe: "quantize_hf.py", config, python, env: threadEnv(plan.settings) }, withTokenRate(ctx));
  } finally {
    removeUnused(scratch);
  }
}

/**
 * The checkpoint's quantization as its config.json declares it (what servers and slm's way back to GGUF
 * will read), checked against what was asked and against what slm can convert: a recipe that wrote
 * something else is a bug to report, not a model to register.
 */
export function writtenQuantization(dir: string, s: WeightsSettings): WeightQuantization {
  const q = assertConvertible(dir)?.quantization;
  const asked = { method: s.method, bits: s.bits, groupSize: s.groupSize };
  if (!q || q.method !== asked.method || q.bits !== asked.bits || q.groupSize !== asked.groupSize || (q.method === "gptq" && (q.descAct !== s.descAct || q.sym !== s.sym))) {
    throw new SlmError(`quantize_hf.py wrote a checkpoint whose quantization_config (${JSON.stringify(q ?? null)}) is not what was asked (${JSON.stringify(asked)}).`, { hint: "This is a bug in slm: please report it with the output of --verbose." });
  }
  return q;
}

/** The lineage step of a GPTQ/AWQ run: every setting, the calibration data by path and hash, where and how long. */
export function weightsStep(plan: WeightsPlan, r: QuantizeRecipeResult, output: "packed" | "scaled"): LineageStep {
  const s = plan.settings;
  const c = plan.calibration.info;
  return {
    from: plan.source.from,
    method: s.method,
    parameters: {
      output,
      bits: s.bits,
      groupSize: s.groupSize,
      ...(s.method === "gptq" ? { descAct: s.descAct, sym: s.sym, damp: s.damp } : { zeroPoint: s.zeroPoint }),
      samples: r.samples,
      seqLen: r.seq_len,
      calibration: { file: c.file, format: c.format, examples: c.examples, sha256: c.sha256, tokens: r.calibration_tokens },
      device: r.device,
      seconds: r.seconds,
      peakMemoryBytes: r.peak_memory_bytes,
      quantizedLinears: r.quantized_linears,
    },
    at: new Date().toISOString(),
  };
}

/**
 * GPTQ or AWQ into a work folder under $SLM_HOME/models, which becomes `<name>/` and a registry entry by
 * one rename under the registry's lock: Ctrl+C, a failing recipe or a full disk leave neither.
 */
export async function runWeights(plan: WeightsPlan, ctx: BackendContext = {}): Promise<WeightsResult> {
  const started = performance.now();
  const python = await checkPython(plan.settings, ctx);
  const sourceSize = weightBytes(plan);
  ensureFreeSpace(modelsDir(), packedSizeEstimate(plan) * 1.1 + plan.calibration.content.length, `the ${plan.settings.method.toUpperCase()} checkpoint of ${plan.source.source.name}`);
  const work = derivedWorkDir();
  try {
    const r = await runQuantizeRecipe(plan, work, "packed", python, ctx);
    const quantization = writtenQuantization(work, plan.settings);
    const finalDir = path.join(modelsDir(), plan.name);
    const files = folderFiles(work).map((f) => ({ ...f, path: path.join(finalDir, path.relative(work, f.path)) }));
    const src = plan.source.source;
    const entry: ModelEntry = {
      name: plan.name,
      format: plan.settings.method,
      path: finalDir,
      files,
      source: { type: "derived" },
      quant: `${plan.settings.method.toUpperCase()}-${plan.settings.bits}bit`,
      quantization,
      size: files.reduce((a, f) => a + f.size, 0),
      parameters: r.parameters || plan.folder.parameters,
      contextLength: plan.folder.contextLength,
      architecture: r.architecture || plan.folder.architecture,
      lineage: [weightsStep(plan, r, "packed"), ...src.lineage],
      createdAt: new Date().toISOString(),
    };
    await withStep(ctx, "quantize:register", `Registering ${plan.name}`, () => installDerived(work, entry), () => finalDir);
    return { model: entry, source: { name: src.name, path: src.path, size: sourceSize }, recipe: r, seconds: (performance.now() - started) / 1000 };
  } finally {
    // installDerived moved it on success; anything left is a failed or cancelled run.
    removeUnused(work);
  }
}
