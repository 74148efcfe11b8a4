import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { NotFoundError, UsageError } from "../../core/errors.js";

export interface LoraSpec {
  path: string;
  scale: number;
}

/** `TARGET[:SCALE]`, as `--lora` takes it; the scale defaults to 1. */
export function splitLoraSpec(spec: string): { target: string; scale: number } {
  const m = /^(.*):(-?\d+(?:\.\d+)?)$/.exec(spec);
  return { target: m ? m[1]! : spec, scale: m ? Number(m[2]) : 1 };
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
