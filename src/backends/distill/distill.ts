import { existsSync } from "node:fs";
import path from "node:path";
import { UsageError } from "../../core/errors.js";
import type { BackendContext } from "../../core/events.js";
import type { FinetuneResult } from "../finetune/finetune.js";
import type { FinetuneRequest } from "../finetune/options.js";
import { settingsOf } from "../finetune/options.js";
import { type FinetuneBase, resolveFinetuneBase } from "../finetune/base.js";
import { checkRunDir, runDirFor } from "../finetune/run.js";
import type { SamplingOptions } from "../llama/generate.js";
import type { GpuChoice } from "../llama/runtime.js";
import { assertFreeName } from "../store/derived.js";
import { type DatasetFiles, type DatasetLineage, datasetFiles } from "./dataset.js";
import { type Prompts, readPrompts, readRelabelPrompts } from "./prompts.js";
import { type GenerationSummary, teacherDataset } from "./teacher.js";
import { splitLoraSpec } from "../llama/lora.js";

/** What `slm distill` was asked: the teacher's side, then `slm finetune`'s options for the student. */
export interface DistillRequest {
  teacher: string;
  teacherLora?: string[];
  student: string;
  prompts: string;
  relabel?: boolean;
  /** The fine-tune's name: the student registers as `<student>+<out>`; the dataset has that name too. */
  out?: string;
  kdLogprobs?: number;
  kdAlpha?: number;
  full?: boolean;
  parallel?: number;
  threads?: number;
  contextSize?: number;
  gpu?: GpuChoice;
  verbose?: boolean;
  sampling: SamplingOptions;
  /** The rest of `slm finetune`'s options, passed on as they are. */
  finetune: Omit<FinetuneRequest, "ref" | "data" | "out" | "full" | "kdAlpha" | "distill">;
  /** Stop once the dataset is made (no training). */
  dataOnly?: boolean;
}

export interface DistillPlan {
  request: DistillRequest;
  student: FinetuneBase;
  name: string;
  out: string;
  files: DatasetFiles;
  prompts: Prompts;
}

/** The largest --kd-logprobs: the runtimes report at most 20 alternatives per token (OpenAI's limit). */
export const MAX_KD_LOGPROBS = 20;

/** Everything that needs neither the teacher nor Python: options, the prompts file, the student, the names. */
export function planDistill(r: DistillRequest): DistillPlan {
  if (r.kdLogprobs !== undefined && !(Number.isInteger(r.kdLogprobs) && r.kdLogprobs >= 1 && r.kdLogprobs <= MAX_KD_LOGPROBS)) {
    throw new UsageError(`--kd-logprobs must be a whole number from 1 to ${MAX_KD_LOGPROBS} (got ${r.kdLogprobs}).`);
  }
  if (r.kdAlpha !== undefined && r.kdLogprobs === undefined) throw new UsageError("--kd-alpha mixes the token-level KD loss with cross-entropy: it needs --kd-logprobs K.", { hint: "Without --kd-logprobs the student learns from the teacher's answers (sequence-level KD)." });
  if (r.dataOnly) {
    // The student's options (commander's "auto" device aside) mean nothing without training: refuse them rather than drop them.
    const given = Object.entries({ full: r.full, kdAlpha: r.kdAlpha, ...r.finetune }).filter(([k, v]) => v !== undefined && v !== false && !(k === "device" && v === "auto"));
    if (given.length) {
      const flags = given.map(([k]) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join(", ");
      throw new UsageError(`--data-only trains no student: ${flags} would do nothing.`, { hint: "Drop them, or drop --data-only to train the student too (a finished dataset is reused)." });
    }
  }
  // The fine-tune's options are checked now (--full with LoRA options, --kd-alpha's range…), not after the teacher's work.
  settingsOf({ ...r.finetune, full: r.full, kdAlpha: r.kdAlpha, ref: r.student, data: r.prompts });
  // A GGUF student is refused here, with how to give HF weights instead (finetune's base resolution).
  const student = resolveFinetuneBase(r.student);
  const out = r.out ?? "distill";
  const name = `${student.name}+${out}`;
  assertFreeName(name);
  const files = datasetFiles(name);
  if (!r.dataOnly) checkRunDir(runDirFor(name), name, !!r.finetune.resume);
  const prompts = r.relabel ? readRelabelPrompts(r.prompts) : readPrompts(r.prompts);
  return { request: r, student, name, out, files, prompts };
}

export interface DistillResult {
  dataset: DatasetLineage & { path: string };
  generation: GenerationSummary;
  /** null with --data-only. */
  finetune: FinetuneResult | null;
  seconds: number;
}

/** Teacher answers (checked tokenizers first with --kd-logprobs), then the student's fine-tune on them. */
export async function runDistill(plan: DistillPlan, ctx: BackendContext = {}): Promise<DistillResult> {
  const started = performance.now();
  const r = plan.request;
  const [{ resolveRunnable }, { assertGenerative }] = await Promise.all([import("../convert/runnable.js"), import("../gguf/embedding.js")]);
  const teacher = await resolveRunnable(r.teacher, ctx);
  assertGenerative(teacher, "run");
  const kdLogprobs = r.kdLogprobs ?? null;
  if (kdLogprobs !== null) await (await import("./vocab.js")).assertSharedTokenizer(teacher, plan.student, ctx);
  const { lineage, generation } = await teacherDataset(plan.files, { entry: teacher, lora: r.teacherLora ?? [], sampling: r.sampling, kdLogprobs, parallel: r.parallel, threads: r.threads, contextSize: r.contextSize, gpu: r.gpu, verbose: r.verbose }, plan.prompts, !!r.relabel, ctx);
  const dataset = { ...lineage, path: plan.files.data };
  if (r.dataOnly) return { dataset, generation, finetune: null, seconds: (performance.now() - started) / 1000 };
  const [{ planFinetune }, { runFinetune }] = await Promise.all([import("../finetune/plan.js"), import("../finetune/finetune.js")]);
  const request: FinetuneRequest = { ...r.finetune, full: r.full, kdAlpha: r.kdAlpha, distill: { teacher: teacher.name, ...(r.teacherLora?.length ? { teacherLora: r.teacherLora.map(loraSource) } : {}), dataset: plan.files.dir, kdLogprobs }, ref: r.student, data: plan.files.data, out: plan.out };
  const finetune = await runFinetune(planFinetune(request), ctx);
  return { dataset, generation, finetune, seconds: (performance.now() - started) / 1000 };
}

/**
 * A --teacher-lora value as the student's lineage keeps it: a local adapter by its absolute path (the
 * command may have named it relative to another folder), a Hub repository as given; the scale when not 1.
 */
export function loraSource(spec: string): string {
  const { target, scale } = splitLoraSpec(spec);
  const local = path.resolve(target);
  return `${existsSync(local) ? local : target}${scale !== 1 ? `:${scale}` : ""}`;
}
