import { UsageError } from "../../core/errors.js";

/** What `slm finetune` was asked, as the command passes it on (unset options take the defaults below). */
export interface FinetuneRequest {
  ref: string;
  /** --lora FILE: the training data. */
  data: string;
  evalData?: string;
  valSplit?: number;
  epochs?: number;
  maxSteps?: number;
  lr?: number;
  rank?: number;
  alpha?: number;
  dropout?: number;
  /** "all-linear" or module names separated by commas (q_proj,v_proj). */
  targetModules?: string;
  batchSize?: number;
  gradAccum?: number;
  maxSeqLen?: number;
  packing?: boolean;
  qlora?: boolean;
  seed?: number;
  resume?: boolean;
  out?: string;
  merge?: boolean;
  trainOnPrompt?: boolean;
  device?: FinetuneDevice;
  /** Data-parallel processes, one per GPU (on --device cpu, CPU processes). */
  gpus?: number;
  /** --full: train every weight (no LoRA); the result is registered as a model of its own. */
  full?: boolean;
  /** Token-level distillation weight (0..1) for data with `teacher` fields: default 0.5 there, refused elsewhere. */
  kdAlpha?: number;
  /** Set by `slm distill`: what the data was made from (the lineage then says "distill"). */
  distill?: DistillOrigin;
}

/** Where a distillation dataset came from, as the lineage records it. */
export interface DistillOrigin {
  teacher: string;
  /** --teacher-lora's adapters (local ones as absolute paths, with their scale): the teacher is not `teacher` alone. */
  teacherLora?: string[];
  dataset: string;
  /** K of --kd-logprobs, or null for sequence-level distillation. */
  kdLogprobs: number | null;
}

export type FinetuneDevice = "auto" | "cpu" | "cuda";
export const DEVICES: readonly FinetuneDevice[] = ["auto", "cpu", "cuda"];

/** The hyper-parameters of a run, every one decided (these go into the recipe config and the lineage). */
export interface FinetuneSettings {
  epochs: number;
  maxSteps: number | null;
  lr: number;
  rank: number;
  alpha: number;
  dropout: number;
  targetModules: "all-linear" | string[];
  batchSize: number;
  gradAccum: number;
  /** null until the base's context length is known (min of it and 2048). */
  maxSeqLen: number | null;
  packing: boolean;
  qlora: boolean;
  seed: number;
  trainOnPrompt: boolean;
  device: FinetuneDevice;
  gpus: number;
  full: boolean;
  /** null: cross-entropy alone. Decided by planFinetune from the data (settingsOf only checks the range). */
  kdAlpha: number | null;
}

export const DEFAULTS = { epochs: 3, lr: 2e-4, rank: 16, alpha: 32, dropout: 0, batchSize: 8, gradAccum: 1, seed: 42, maxSeqLen: 2048, kdAlpha: 0.5 } as const;

const MODULE = /^[A-Za-z_][A-Za-z0-9_.]*$/;

function positiveInt(flag: string, v: number | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  if (!Number.isInteger(v) || v < 1) throw new UsageError(`${flag} must be a positive whole number (got ${v}).`);
  return v;
}

function positive(flag: string, v: number | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  if (!Number.isFinite(v) || v <= 0) throw new UsageError(`${flag} must be a positive number (got ${v}).`);
  return v;
}

export function parseTargetModules(v: string | undefined): "all-linear" | string[] {
  if (v === undefined || v.trim() === "all-linear") return "all-linear";
  const names = v.split(",").map((s) => s.trim()).filter(Boolean);
  const bad = names.filter((n) => !MODULE.test(n));
  if (names.length === 0 || bad.length > 0) {
    throw new UsageError(`--target-modules takes "all-linear" or module names separated by commas${bad.length ? ` ("${bad[0]}" is not one)` : ""}.`, { hint: "For Llama-family models: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj." });
  }
  return [...new Set(names)];
}

/** Checks every option on its own and against the others; defaults fill what was not given. */
export function settingsOf(r: FinetuneRequest): FinetuneSettings {
  if (r.evalData !== undefined && r.valSplit !== undefined) throw new UsageError("Give --eval-data or --val-split, not both.");
  if (r.valSplit !== undefined && !(r.valSplit > 0 && r.valSplit < 1)) throw new UsageError(`--val-split must be a fraction between 0 and 1, e.g. 0.05 (got ${r.valSplit}).`);
  const device = r.device ?? "auto";
  if (!DEVICES.includes(device)) throw new UsageError(`--device must be one of ${DEVICES.join(", ")} (got "${device}").`);
  if (device === "cpu" && r.qlora) throw new UsageError("--qlora trains on a 4-bit model through bitsandbytes, which needs a CUDA GPU; it cannot run with --device cpu.");
  if (r.dropout !== undefined && !(r.dropout >= 0 && r.dropout < 1)) throw new UsageError(`--dropout must be at least 0 and below 1 (got ${r.dropout}).`);
  if (r.kdAlpha !== undefined && !(r.kdAlpha >= 0 && r.kdAlpha <= 1)) throw new UsageError(`--kd-alpha must be between 0 and 1 (got ${r.kdAlpha}).`, { hint: "It weighs the distillation loss against cross-entropy: loss = α·KD + (1 − α)·CE." });
  if (r.full) checkFull(r);
  return {
    epochs: positive("--epochs", r.epochs, DEFAULTS.epochs),
    maxSteps: r.maxSteps === undefined ? null : positiveInt("--max-steps", r.maxSteps, 1),
    lr: positive("--lr", r.lr, DEFAULTS.lr),
    rank: positiveInt("--rank", r.rank, DEFAULTS.rank),
    alpha: positive("--alpha", r.alpha, DEFAULTS.alpha),
    dropout: r.dropout ?? DEFAULTS.dropout,
    targetModules: parseTargetModules(r.targetModules),
    batchSize: positiveInt("--batch-size", r.batchSize, DEFAULTS.batchSize),
    gradAccum: positiveInt("--grad-accum", r.gradAccum, DEFAULTS.gradAccum),
    maxSeqLen: r.maxSeqLen === undefined ? null : positiveInt("--max-seq-len", r.maxSeqLen, DEFAULTS.maxSeqLen),
    packing: !!r.packing,
    qlora: !!r.qlora,
    seed: r.seed === undefined ? DEFAULTS.seed : nonNegativeInt("--seed", r.seed),
    trainOnPrompt: !!r.trainOnPrompt,
    device,
    gpus: positiveInt("--gpus", r.gpus, 1),
    full: !!r.full,
    kdAlpha: r.kdAlpha ?? null,
  };
}

/** --full trains the weights themselves: LoRA's options, 4-bit training and merging have no meaning there. */
function checkFull(r: FinetuneRequest): void {
  const lora = (["rank", "alpha", "dropout", "targetModules"] as const).filter((k) => r[k] !== undefined);
  if (lora.length > 0) {
    const flag = { rank: "--rank", alpha: "--alpha", dropout: "--dropout", targetModules: "--target-modules" };
    throw new UsageError(`${lora.map((k) => flag[k]).join(", ")} ${lora.length === 1 ? "sets" : "set"} the LoRA adapter, which --full does not train.`, { hint: "Drop --full to train a LoRA adapter, or drop the LoRA options." });
  }
  if (r.qlora) throw new UsageError("--full trains every weight in full precision; it cannot train the 4-bit model of --qlora.", { hint: "Drop one of --full and --qlora." });
  if (r.merge) throw new UsageError("--full already produces a whole model: there is no adapter to --merge.", { hint: "Drop --merge." });
}

function nonNegativeInt(flag: string, v: number): number {
  if (!Number.isInteger(v) || v < 0) throw new UsageError(`${flag} must be a whole number, 0 or more (got ${v}).`);
  return v;
}
