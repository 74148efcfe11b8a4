import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { NotFoundError, UsageError } from "../../core/errors.js";

export interface LoraSpec {
  path: string;
  scale: number;
}

const SCALE = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?$/i;

/**
 * `TARGET[:SCALE]`, as `--lora` takes it; the scale defaults to 1. A colon followed by something that is
 * not a number is a mistyped scale (not a file named so, which would then be "not found"), unless it
 * belongs to the target: `hf:org/name`, or a file that exists under that very name.
 */
export function splitLoraSpec(spec: string): { target: string; scale: number } {
  const i = spec.lastIndexOf(":");
  const after = spec.slice(i + 1);
  if (i <= 0 || after.includes("/") || existsSync(spec)) return { target: spec, scale: 1 };
  const scale = Number(after);
  if (!SCALE.test(after) || !Number.isFinite(scale)) {
    throw new UsageError(`"${after}" in "${spec}" is not a LoRA scale: ADAPTER[:SCALE] takes a number after the colon (e.g. ${spec.slice(0, i)}:0.5).`);
  }
  return { target: spec.slice(0, i), scale };
}

/** `FILE[:SCALE]` for a GGUF LoRA file; PEFT folders and Hub repos go through adapters/resolve.ts. */
export function parseLoraSpec(spec: string): LoraSpec {
  const { target, scale } = splitLoraSpec(spec);
  const file = path.resolve(target);
  if (!existsSync(file)) throw new NotFoundError(`LoRA adapter not found: ${file}`);
  if (statSync(file).isDirectory()) {
    throw new UsageError(`${file} is a folder; a GGUF LoRA adapter file is needed here.`, { hint: "slm run/chat/serve/bench --lora also take a PEFT adapter folder and convert it." });
  }
  if (!file.toLowerCase().endsWith(".gguf")) throw new UsageError(`${file} is not a .gguf LoRA adapter.`, { hint: "--lora takes a GGUF LoRA file, a PEFT adapter folder, or a Hub repo of a PEFT adapter." });
  return { path: file, scale };
}
