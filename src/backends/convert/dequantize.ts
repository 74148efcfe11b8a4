import { existsSync, readdirSync } from "node:fs";
import type { BackendContext } from "../../core/events.js";
import { type PythonEnv, requirePythonModules } from "../python/env.js";
import { runRecipe } from "../python/recipe.js";

/**
 * AWQ weights back to plain float16, for llama.cpp's converter, which refuses AWQ checkpoints: the
 * quantize_hf.py recipe's `dequantize` task writes an unquantized Hugging Face folder (config.json
 * without quantization_config, the tokenizer files copied) into `outDir`, which must not exist yet or be
 * empty. On failure or Ctrl+C the recipe removes what it wrote; the caller removes `outDir` itself.
 */
export interface DequantizeResult {
  output_dir: string;
  method: string;
  bits: number;
  dtype: string;
  tensors: number;
  size: number;
  seconds: number;
}

/** What quantize_hf.py checks before any task (torch for the arithmetic, transformers, safetensors to read and write). */
export const DEQUANTIZE_MODULES = ["torch", "transformers", "safetensors"];

export async function checkDequantize(python: PythonEnv, ctx: BackendContext = {}): Promise<void> {
  await requirePythonModules(python, DEQUANTIZE_MODULES, "Dequantizing AWQ weights (recipes/quantize_hf.py)", { signal: ctx.signal });
}

export async function dequantizeFolder(model: string, outDir: string, python: PythonEnv, ctx: BackendContext = {}): Promise<DequantizeResult> {
  if (existsSync(outDir) && readdirSync(outDir).length > 0) throw new Error(`internal: ${outDir} is not empty`);
  return runRecipe<DequantizeResult>({ recipe: "quantize_hf.py", config: { task: "dequantize", model, output_dir: outDir, dtype: "float16" }, python }, ctx);
}
