import path from "node:path";
import { type BackendContext, type SlmEvent, withStep } from "../../core/events.js";
import { ensureFreeSpace } from "../../core/storage.js";
import { isOnnxDtype, type OnnxDtype, ONNX_DTYPES } from "../onnx/layout.js";
import { type PythonEnv, requirePythonModules, resolvePython } from "../python/env.js";
import { runRecipe } from "../python/recipe.js";
import { removeUnused } from "../store/cleanup.js";
import { derivedWorkDir, installDerived, modelsDir } from "../store/derived.js";
import { folderFiles } from "../store/folderInfo.js";
import { updateRegistry } from "../store/registry.js";
import type { LineageStep, ModelEntry } from "../store/types.js";
import type { ExportDtype, ExportPlan, ExportRecipeResult, ExportResult } from "./types.js";

/** The Python modules export_onnx.py imports; q4 adds onnx_ir (onnxruntime's MatMulNBits quantizer imports it), a merge peft. */
export function recipeModules(plan: Pick<ExportPlan, "dtypes" | "merge">): string[] {
  return ["torch", "transformers", "onnx", "onnxruntime", ...(plan.dtypes.includes("q4") ? ["onnx_ir"] : []), ...(plan.merge ? ["peft", "safetensors"] : [])];
}

async function checkPython(plan: ExportPlan, ctx: BackendContext): Promise<PythonEnv> {
  return withStep(ctx, "python", "Checking the Python environment", async () => {
    const env = await resolvePython();
    await requirePythonModules(env, recipeModules(plan), "ONNX export", { signal: ctx.signal });
    return env;
  }, (env) => env.python);
}

/** Bytes per parameter of each file (q4: 4 bits + a float scale per 32; q8: int8 + embeddings left fp32). */
const BYTES_PER_PARAMETER: Record<ExportDtype, number> = { fp32: 4, fp16: 2, q8: 1.3, q4: 0.8 };

/** Room for the files asked for, plus the fp32 graph traced into a scratch folder (twice for q8: it works on files), plus a merge. */
export function spaceNeeded(plan: ExportPlan): number {
  const params = plan.parameters ?? plan.sourceBytes / 2;
  const files = plan.dtypes.reduce((a, d) => a + params * BYTES_PER_PARAMETER[d], 0);
  const scratch = params * 4 * (plan.dtypes.includes("q8") ? 2 : 1);
  const merged = plan.merge ? plan.sourceBytes : 0;
  return Math.ceil((files + scratch + merged) * 1.1);
}

/** torch's CPU thread pool follows --threads / SLM_THREADS; an OMP_NUM_THREADS the user set wins. */
function threadEnv(threads: number | null): Record<string, string> | undefined {
  return threads && !process.env.OMP_NUM_THREADS ? { OMP_NUM_THREADS: String(threads) } : undefined;
}

/** Step details that name slm's scratch folders read as what the user knows instead (the source's name). */
function asTheUserSees(ctx: BackendContext, shown: ReadonlyMap<string, string>): BackendContext {
  const sink = ctx.onEvent;
  if (!sink) return ctx;
  return { ...ctx, onEvent: (e: SlmEvent) => sink(e.type === "step" && e.detail !== undefined && shown.has(e.detail) ? { ...e, detail: shown.get(e.detail) } : e) };
}

export function exportStep(plan: ExportPlan, r: ExportRecipeResult): LineageStep {
  return {
    from: plan.source.from,
    method: "export-onnx",
    parameters: {
      dtypes: r.dtypes,
      opset: r.opset,
      ...(r.dtypes.includes("q4") ? { q4: "MatMulNBits, symmetric, block 32" } : {}),
      ...(plan.merge ? { mergedAdapter: plan.merge.adapter } : {}),
      logitDiff: r.logit_diff,
      seconds: r.seconds,
    },
    at: new Date().toISOString(),
  };
}

/**
 * An export gaining dtypes stays one export step: the latest export step of the same source is updated
 * (its dtypes become those present, the newest run's figures win) instead of a step per added dtype.
 */
export function lineageWithAdded(lineage: readonly LineageStep[], step: LineageStep, present: readonly OnnxDtype[]): LineageStep[] {
  const [last, ...rest] = lineage;
  if (last?.method !== "export-onnx" || last.from !== step.from) return [step, ...lineage];
  return [{ ...step, parameters: { ...last.parameters, ...step.parameters, dtypes: [...present] } }, ...rest];
}

/** The variants present, in the vocabulary's order (the recipe reports them; the folder is what counts). */
function presentDtypes(r: ExportRecipeResult): OnnxDtype[] {
  return ONNX_DTYPES.filter((d) => r.present.some((p) => isOnnxDtype(p) && p === d));
}

function entryOf(plan: ExportPlan, r: ExportRecipeResult, dir: string, filesDir: string, lineage: LineageStep[], createdAt: string): ModelEntry {
  const files = folderFiles(filesDir).map((f) => ({ ...f, path: path.join(dir, path.relative(filesDir, f.path)) }));
  return {
    name: plan.name,
    format: "onnx",
    path: dir,
    files,
    source: { type: "derived" },
    onnx: { dtypes: presentDtypes(r), base: "model" },
    size: files.reduce((a, f) => a + f.size, 0),
    parameters: r.parameters || plan.parameters,
    contextLength: plan.contextLength,
    architecture: r.architecture,
    lineage,
    createdAt,
  };
}

/** Merges a fine-tune's adapter into its base (recipes/merge_lora.py) in `dir`; returns the merged folder. */
async function mergeFirst(plan: ExportPlan, python: PythonEnv, dir: string, ctx: BackendContext): Promise<string> {
  const out = path.join(dir, "merged");
  await runRecipe({ recipe: "merge_lora.py", config: { base: plan.merge!.base, adapter: plan.merge!.adapter, out }, python }, asTheUserSees(ctx, new Map([[out, plan.source.source.name]])));
  return out;
}

/**
 * Exports into a work folder under $SLM_HOME/models that becomes `<name>/` and a registry entry by one
 * rename under the registry's lock; or, for an existing export, into its folder, where the recipe moves
 * the new files in only once all of them are written and checked. Ctrl+C, a failing recipe or a full
 * disk leave no new folder, file or entry.
 */
export async function runExport(plan: ExportPlan, ctx: BackendContext = {}): Promise<ExportResult> {
  const started = performance.now();
  ensureFreeSpace(modelsDir(), spaceNeeded(plan), `the ONNX export of ${plan.source.source.name}`);
  const python = await checkPython(plan, ctx);
  const scratch = plan.merge ? derivedWorkDir() : undefined;
  const work = plan.existing ? undefined : derivedWorkDir();
  try {
    const model = scratch ? await mergeFirst(plan, python, scratch, ctx) : path.resolve(plan.source.source.path);
    const outputDir = plan.existing?.path ?? work!;
    const config = { model, output_dir: outputDir, dtypes: plan.dtypes, opset: plan.opset, threads: plan.threads };
    const shown = new Map([[model, plan.source.source.name]]);
    const r = await runRecipe<ExportRecipeResult>({ recipe: "export_onnx.py", config, python, env: threadEnv(plan.threads) }, asTheUserSees(ctx, shown));
    const step = exportStep(plan, r);
    let entry: ModelEntry;
    if (plan.existing) {
      const dir = plan.existing.path;
      entry = await withStep(ctx, "export:register", `Updating ${plan.name}`, () =>
        updateRegistry((reg) => {
          const now = reg.models[plan.name] ?? plan.existing!;
          const updated = entryOf(plan, r, dir, dir, lineageWithAdded(now.lineage, step, presentDtypes(r)), now.createdAt);
          reg.models[plan.name] = { ...now, ...updated, evals: now.evals };
          return reg.models[plan.name];
        }), () => dir);
    } else {
      const finalDir = path.join(modelsDir(), plan.name);
      entry = entryOf(plan, r, finalDir, work!, [step, ...plan.source.source.lineage], new Date().toISOString());
      await withStep(ctx, "export:register", `Registering ${plan.name}`, () => installDerived(work!, entry), () => finalDir);
    }
    return {
      model: entry,
      added: r.dtypes,
      addedToExisting: !!plan.existing,
      source: { name: plan.source.source.name, path: plan.source.source.path },
      recipe: r,
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    // installDerived moved the work folder on success; anything left is a failed or cancelled run.
    if (work) removeUnused(work);
    if (scratch) removeUnused(scratch);
  }
}
