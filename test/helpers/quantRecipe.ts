import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa } from "execa";
import { FIXTURE, ROOT } from "./cli.js";

/**
 * recipes/quantize_hf.py run directly (the config of PLAN11's contract 1), for what the CLI does not offer:
 * the round-to-nearest baseline (`method: "rtn"`, the same grid and format as GPTQ without the error
 * feedback), and AWQ's `output: "scaled"` folder in the benches. Also the merge recipe slm's fine-tunes use.
 */
export const RECIPES = path.join(ROOT, "recipes");
export const HF = path.join(FIXTURE, "hf");
export const DATA = path.join(FIXTURE, "data");

export interface QuantizeConfig {
  model: string;
  output_dir: string;
  method: "gptq" | "awq" | "rtn";
  output?: "packed" | "scaled";
  bits?: number;
  group_size?: number;
  desc_act?: boolean;
  sym?: boolean;
  damp?: number;
  zero_point?: boolean;
  /** Required for gptq/awq; rtn without it rounds without running the model. */
  calibration?: { file: string; format: "text" | "chat-jsonl" };
  samples?: number;
  seq_len?: number;
  device?: "auto" | "cpu" | "cuda";
  threads?: number | null;
}

/** The recipe's result (the fields the tests and benches read). */
export interface QuantizeResult {
  output_dir: string;
  method: string;
  bits: number;
  group_size: number;
  seconds: number;
  peak_memory_bytes: number;
  size: number;
  calibration_tokens: number;
  quantized_linears: number;
}

/** Runs a recipe with a JSON config; returns its result event's data, or throws with the stderr tail. */
export async function runRecipe<T>(python: string, script: string, config: object, env: Record<string, string> = {}): Promise<{ data: T; wall: number }> {
  const dir = mkdtempSync(path.join(tmpdir(), "slm-recipe-cfg-"));
  const cfg = path.join(dir, "config.json");
  writeFileSync(cfg, JSON.stringify(config));
  const t0 = performance.now();
  try {
    const r = await execa(python, [path.join(RECIPES, script), "--config", cfg], { reject: false, env: { OMP_NUM_THREADS: "1", ...env } });
    const wall = (performance.now() - t0) / 1000;
    const last = r.stdout.trim().split("\n").filter(Boolean).pop();
    const event = last ? (JSON.parse(last) as { type: string; data?: T }) : undefined;
    if (r.exitCode !== 0 || event?.type !== "result") throw new Error(`${script} failed (exit ${r.exitCode}):\n${r.stderr.slice(-3000)}`);
    return { data: event.data as T, wall };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function quantizeRecipe(python: string, config: QuantizeConfig, env: Record<string, string> = {}): Promise<{ data: QuantizeResult; wall: number }> {
  return runRecipe<QuantizeResult>(python, "quantize_hf.py", { task: "quantize", output: "packed", device: "cpu", ...config }, env);
}

/** tiny-arith with the fixture's subtraction adapter merged in, by recipes/merge_lora.py (what `slm finetune --merge` runs). */
export async function mergedSubModel(python: string, out: string): Promise<string> {
  await runRecipe(python, "merge_lora.py", { base: HF, adapter: path.join(FIXTURE, "lora-sub"), out });
  return out;
}

/** Bytes of the files in a folder (a checkpoint's size) or of one file. */
export function sizeOf(p: string): number {
  const st = statSync(p);
  if (!st.isDirectory()) return st.size;
  return readdirSync(p).reduce((sum, f) => sum + sizeOf(path.join(p, f)), 0);
}

