import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { NotFoundError, UsageError } from "../../core/errors.js";

export interface LoraSpec {
  path: string;
  scale: number;
}

/** `FILE[:SCALE]`, as `--lora` takes it; the scale defaults to 1. */
export function parseLoraSpec(spec: string): LoraSpec {
  const m = /^(.*):(-?\d+(?:\.\d+)?)$/.exec(spec);
  const file = path.resolve(m ? m[1]! : spec);
  const scale = m ? Number(m[2]) : 1;
  if (!existsSync(file)) throw new NotFoundError(`LoRA adapter not found: ${file}`);
  if (statSync(file).isDirectory()) {
    throw new UsageError(`${file} is a folder; --lora takes a GGUF LoRA adapter file.`, { hint: "Convert a PEFT adapter with llama.cpp's convert_lora_to_gguf.py first." });
  }
  if (!file.toLowerCase().endsWith(".gguf")) throw new UsageError(`${file} is not a .gguf LoRA adapter.`);
  return { path: file, scale };
}
