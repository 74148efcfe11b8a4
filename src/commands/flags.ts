import { type Command, InvalidArgumentError, Option } from "commander";
import type { SamplingOptions } from "../backends/llama/generate.js";
import { ONNX_DTYPES, type OnnxDtype } from "../backends/onnx/layout.js";
import { collect, positiveInt } from "./action.js";

/** Flags shared by every command that generates text (run, chat, serve, eval): the sampling options themselves. */
export type SamplingFlags = SamplingOptions;

/** Only the sampling options of a command's flags, to hand to a runtime without the other flags. */
export function samplingOf(f: SamplingFlags): SamplingOptions {
  return { maxTokens: f.maxTokens, temperature: f.temperature, topP: f.topP, topK: f.topK, minP: f.minP, repeatPenalty: f.repeatPenalty, seed: f.seed, stop: f.stop };
}

export interface RuntimeFlags {
  ctx?: number;
  threads?: number;
  gpu?: string;
  lora?: string[];
  dtype?: OnnxDtype;
}

/** --batch, kept apart from addRuntimeOptions so a command offers it only once it passes it on. */
export interface BatchFlags {
  batch?: number;
}

function numberIn(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a number from ${min} to ${max}.`);
    return n;
  };
}

function nonNegativeInt(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a whole number ≥ 0.`);
    return n;
  };
}

export function addSamplingOptions(cmd: Command): Command {
  return cmd
    .option("-n, --max-tokens <n>", "most tokens to generate (default: until the model stops or the context is full)", positiveInt("--max-tokens"))
    .option("-t, --temperature <t>", "randomness; 0 = greedy and repeatable (default 0.8)", numberIn("--temperature", 0, 5))
    .option("--top-p <p>", "nucleus sampling (default 0.95)", numberIn("--top-p", 0, 1))
    .option("--top-k <k>", "sample from the k most likely tokens (default 40)", nonNegativeInt("--top-k"))
    .option("--min-p <p>", "drop tokens below this share of the top one (default 0.05)", numberIn("--min-p", 0, 1))
    .option("--repeat-penalty <x>", "penalise repeated tokens (1 = off, the default)", numberIn("--repeat-penalty", 0, 5))
    .option("--seed <n>", "sampling seed: the same seed gives the same output", nonNegativeInt("--seed"))
    .option("--stop <text>", "stop when this text is generated (repeatable)", collect);
}

export function addRuntimeOptions(cmd: Command): Command {
  return cmd
    .option("-c, --ctx <n>", "context size in tokens (default: the model's, up to 4096, fitted to memory)", positiveInt("--ctx"))
    .option("--threads <n>", "CPU threads (default: one per physical core)", positiveInt("--threads"))
    .addOption(new Option("--gpu <kind>", "GPU backend").choices(["auto", "off", "cuda", "vulkan", "metal"]).default("auto"))
    .option("--lora <adapter[:scale]>", "load a LoRA adapter, optionally scaled (repeatable): a GGUF file, a PEFT folder, or a Hub repo of one (converted once)", collect)
    .addOption(new Option("--dtype <dtype>", "ONNX models: the variant to load (default: q4, else q8, else fp32 — the first the folder has)").choices(ONNX_DTYPES));
}

/**
 * Tokens per llama_decode (llama.cpp's n_batch; node-llama-cpp sets n_ubatch to the same). Prompts
 * longer than this are processed in several batches. Default: node-llama-cpp's, min(context, 512).
 */
export function addBatchOption(cmd: Command): Command {
  return cmd.option("-b, --batch <n>", "batch size in tokens: prompt tokens per decode (default: the context size, up to 512)", positiveInt("--batch"));
}
