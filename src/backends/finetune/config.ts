import type { FinetuneDevice, FinetuneSettings } from "./options.js";

/** The config file of recipes/finetune_lora.py (the recipe protocol, word for word). */
export interface RecipeConfig {
  base: string;
  train: string;
  eval: string | null;
  output_dir: string;
  chat_template: string | null;
  train_on_prompt: boolean;
  epochs: number;
  max_steps: number | null;
  lr: number;
  rank: number;
  alpha: number;
  dropout: number;
  target_modules: "all-linear" | string[];
  batch_size: number;
  grad_accum: number;
  max_seq_len: number;
  packing: boolean;
  qlora: boolean;
  seed: number;
  resume: boolean;
  merge: boolean;
  device: FinetuneDevice;
  gpus: number;
  full: boolean;
  kd_alpha: number | null;
}

/** The `data` of the recipe's last `result` event. */
export interface RecipeResult {
  /** null for a full fine-tune, which writes model_dir instead. */
  adapter_dir: string | null;
  /** The trained HF model folder of a full fine-tune (absent from recipes before --full). */
  model_dir?: string | null;
  /** With kd_alpha: examples whose teacher log-probs lined up with the student's tokens, and those that did not. */
  kd?: { examples: number; misaligned: number } | null;
  merged_dir: string | null;
  /** null when no step ran in this call (a run resumed at its end). */
  train_loss: number | null;
  eval_loss: number | null;
  steps: number;
  epochs: number;
  tokens: number;
  seconds: number;
  peak_gpu_mem_gib: number | null;
  resumed_from: string | null;
}

export interface ConfigInputs {
  /** HF model folder. */
  hf: string;
  trainFile: string;
  evalFile: string | null;
  runDir: string;
  chatTemplate: string | null;
  maxSeqLen: number;
  resume: boolean;
  merge: boolean;
}

export function recipeConfig(s: FinetuneSettings, i: ConfigInputs): RecipeConfig {
  return {
    base: i.hf,
    train: i.trainFile,
    eval: i.evalFile,
    output_dir: i.runDir,
    chat_template: i.chatTemplate,
    train_on_prompt: s.trainOnPrompt,
    epochs: s.epochs,
    max_steps: s.maxSteps,
    lr: s.lr,
    rank: s.rank,
    alpha: s.alpha,
    dropout: s.dropout,
    target_modules: s.targetModules,
    batch_size: s.batchSize,
    grad_accum: s.gradAccum,
    max_seq_len: i.maxSeqLen,
    packing: s.packing,
    qlora: s.qlora,
    seed: s.seed,
    resume: i.resume,
    merge: i.merge,
    device: s.device,
    gpus: s.gpus,
    full: s.full,
    kd_alpha: s.kdAlpha,
  };
}

/** Which flag sets each config key, for "this differs from the interrupted run" messages. */
const FLAG: Partial<Record<keyof RecipeConfig, string>> = {
  base: "<model>",
  train: "--lora / --val-split",
  eval: "--eval-data / --val-split",
  chat_template: "the model's chat template",
  train_on_prompt: "--train-on-prompt",
  epochs: "--epochs",
  max_steps: "--max-steps",
  lr: "--lr",
  rank: "--rank",
  alpha: "--alpha",
  dropout: "--dropout",
  target_modules: "--target-modules",
  batch_size: "--batch-size",
  grad_accum: "--grad-accum",
  max_seq_len: "--max-seq-len",
  packing: "--packing",
  qlora: "--qlora",
  seed: "--seed",
  // Each micro-batch holds --batch-size examples per process, so the process count changes the batches.
  gpus: "--gpus",
  full: "--full",
  kd_alpha: "--kd-alpha",
};

/**
 * What a resumed run would change against the run it continues; --merge and --device may
 * differ (they do not change what is trained). An empty list means it may resume.
 */
export function resumeConflicts(before: RecipeConfig, now: RecipeConfig): string[] {
  const out: string[] = [];
  for (const key of Object.keys(FLAG) as (keyof RecipeConfig)[]) {
    const a = JSON.stringify(before[key]);
    const b = JSON.stringify(now[key]);
    if (a !== b) out.push(key === "chat_template" ? `${FLAG[key]} changed` : `${FLAG[key]}: ${a} then, ${b} now`);
  }
  return out;
}
