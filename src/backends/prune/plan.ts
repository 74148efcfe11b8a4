import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { NotFoundError, UsageError } from "../../core/errors.js";
import type { BackendContext } from "../../core/events.js";
import { packageRoot } from "../../core/paths.js";
import { type HfFolderInfo, inspectHfFolder } from "../convert/hfFolder.js";
import { type CalibrationInfo, recipeCalibration } from "../quantize/calibration.js";
import { type WeightsSource, type WeightsUse, resolveWeightsSource } from "../quantize/weightsSource.js";
import { assertFreeName, derivedName } from "../store/derived.js";
import { summariseHfFolder } from "../store/folderInfo.js";

/**
 * `slm prune`: a smaller model cut from a Hugging Face one, by recipes/prune.py. This file checks a request
 * and settles every setting before Python starts; run.ts runs it and registers the result.
 */
export interface PruneRequest {
  /** An HF folder, a registered HF model or merged fine-tune, a catalog alias or org/repo (pulled --format hf). */
  ref: string;
  /** Decoder blocks to drop. */
  layers?: number;
  /** Share of FFN channels to remove, 0 < r < 1. */
  ffn?: number;
  calibration?: string;
  samples?: number;
  seqLen?: number;
  /** A dataset to heal on (a short full fine-tune). */
  heal?: string;
  /** Heal by distilling from the unpruned model on the calibration data. */
  healDistill?: boolean;
  healSteps?: number;
  healLr?: number;
  device?: "auto" | "cpu" | "cuda";
  threads?: number;
  out?: string;
}

export interface PrunePlan {
  request: PruneRequest;
  source: WeightsSource;
  folder: HfFolderInfo;
  blocks: number;
  intermediateSize?: number;
  /** --ffn: the FFN channels each block keeps. */
  ffnSize?: number;
  calibration: { info: CalibrationInfo; content: string; shipped: boolean };
  heal?: { mode: "data"; data: { info: CalibrationInfo; content: string } } | { mode: "distill" };
  samples: number;
  seqLen: number;
  healSteps: number;
  healLr: number;
  threads: number | null;
  name: string;
}

export const DEFAULTS = { samples: 32, seqLen: 256, healSteps: 100, healLr: 1e-4 } as const;
/** The calibration text slm ships (recipes/data/): used when no --calibration is given. */
export const SHIPPED_CALIBRATION = "prune-calibration.txt";

export const PRUNE_USE: WeightsUse = { who: "pruning", plural: false, verb: "prune" };

export function shippedCalibration(): string {
  return path.join(packageRoot(), "recipes", "data", SHIPPED_CALIBRATION);
}

/** The usage errors that need no model. */
export function checkFlags(req: PruneRequest): void {
  if (req.layers !== undefined && req.ffn !== undefined) {
    throw new UsageError("Give --layers or --ffn, not both: one prune is one cut.", { hint: "Prune twice (the second run starts from the first's name) to remove blocks and FFN channels." });
  }
  if (req.layers === undefined && req.ffn === undefined) throw new UsageError("Say what to prune: --layers K (drop K decoder blocks) or --ffn RATIO (remove that share of FFN channels).");
  if (req.layers !== undefined && (!Number.isInteger(req.layers) || req.layers < 1)) throw new UsageError(`--layers must be a positive whole number (got ${req.layers}).`);
  if (req.ffn !== undefined && !(req.ffn > 0 && req.ffn < 1)) throw new UsageError(`--ffn must be a share between 0 and 1, e.g. 0.25 (got ${req.ffn}).`);
  if (req.heal !== undefined && req.healDistill) throw new UsageError("Give --heal FILE or --heal-distill, not both.");
  if ((req.healSteps !== undefined || req.healLr !== undefined) && req.heal === undefined && !req.healDistill) {
    throw new UsageError("--heal-steps and --heal-lr set up healing: add --heal FILE or --heal-distill.");
  }
  if (req.healLr !== undefined && !(req.healLr > 0)) throw new UsageError(`--heal-lr must be more than 0 (got ${req.healLr}).`);
}

/** llama.cpp's quantization blocks are 32 weights: the pruned FFN width stays a multiple of it. */
export const FFN_MULTIPLE = 32;
/** K-quants pack 256 weights per super-block: another width gets another type for some tensors. */
export const K_QUANT_BLOCK = 256;

/**
 * The FFN width that removing `ratio` of `intermediate` channels leaves: the nearest multiple of 32, at
 * least 32 and fewer than before; undefined when the FFN is too narrow for that.
 */
export function ffnSize(intermediate: number, ratio: number): number | undefined {
  const size = Math.min(Math.max(Math.round((intermediate * (1 - ratio)) / FFN_MULTIPLE) * FFN_MULTIPLE, FFN_MULTIPLE), Math.floor((intermediate - 1) / FFN_MULTIPLE) * FFN_MULTIPLE);
  return size >= FFN_MULTIPLE ? size : undefined;
}

/** `-pruned-L3` (3 blocks left) or `-pruned-ffn576` (576 FFN channels left). */
export function pruneSuffix(req: PruneRequest, blocks: number, ffn: number | undefined): string {
  return req.layers !== undefined ? `pruned-L${blocks - req.layers}` : `pruned-ffn${ffn}`;
}

function readConfig(folder: HfFolderInfo): { blocks?: number; intermediate?: number } {
  const c = JSON.parse(readFileSync(path.join(folder.dir, "config.json"), "utf8")) as Record<string, unknown>;
  const text = (typeof c.text_config === "object" && c.text_config ? c.text_config : c) as Record<string, unknown>;
  const num = (v: unknown) => (typeof v === "number" && Number.isInteger(v) ? v : undefined);
  return { blocks: num(text.num_hidden_layers), intermediate: num(text.intermediate_size) };
}

export async function planPrune(req: PruneRequest, ctx: BackendContext = {}): Promise<PrunePlan> {
  checkFlags(req);
  const calibrationFile = req.calibration ?? shippedCalibration();
  if (!existsSync(calibrationFile)) throw new NotFoundError(`Calibration file not found: ${calibrationFile}`);
  if (req.heal !== undefined && !existsSync(req.heal)) throw new NotFoundError(`Heal data not found: ${req.heal}`);
  if (req.out !== undefined) assertFreeName(req.out);
  const source = await resolveWeightsSource(req.ref, ctx, PRUNE_USE);
  const folder = inspectHfFolder(source.source.path);
  const { blocks, intermediate } = readConfig(folder);
  if (blocks === undefined) throw new UsageError(`${source.source.name}'s config.json has no num_hidden_layers: slm prunes decoder-only models (Llama, Qwen, Mistral, SmolLM…).`);
  if (req.layers !== undefined && req.layers >= blocks) {
    throw new UsageError(`--layers ${req.layers}: ${source.source.name} has ${blocks} decoder blocks, so at most ${blocks - 1} can be dropped.`, { hint: `Use --layers ${Math.max(1, Math.floor(blocks / 4))} to drop about a quarter of them.` });
  }
  if (req.ffn !== undefined && intermediate === undefined) throw new UsageError(`${source.source.name}'s config.json has no intermediate_size: --ffn prunes Llama-style gated FFNs.`);
  const ffn = req.ffn !== undefined ? ffnSize(intermediate!, req.ffn) : undefined;
  if (req.ffn !== undefined && ffn === undefined) throw new UsageError(`${source.source.name}'s FFN has ${intermediate} channels: too few to keep a multiple of ${FFN_MULTIPLE} below that.`);
  const context = folder.contextLength;
  if (req.seqLen !== undefined && context !== undefined && req.seqLen > context) throw new UsageError(`--seq-len ${req.seqLen} is longer than ${source.source.name}'s context (${context} tokens).`, { hint: `Use --seq-len ${context} or less.` });
  const model = { name: source.source.name, hasChatTemplate: summariseHfFolder(folder.dir).hasChatTemplate };
  const calibration = { ...recipeCalibration(path.resolve(calibrationFile), model), shipped: req.calibration === undefined };
  const heal = req.heal !== undefined ? { mode: "data" as const, data: recipeCalibration(path.resolve(req.heal), model) } : req.healDistill ? { mode: "distill" as const } : undefined;
  const name = req.out ?? derivedName(source.source, pruneSuffix(req, blocks, ffn));
  if (req.out === undefined) assertFreeName(name);
  const envThreads = Number(process.env.SLM_THREADS);
  return {
    request: req, source, folder, blocks, intermediateSize: intermediate, ffnSize: ffn, calibration, heal,
    samples: req.samples ?? DEFAULTS.samples,
    seqLen: Math.min(req.seqLen ?? DEFAULTS.seqLen, context ?? Number.POSITIVE_INFINITY),
    healSteps: req.healSteps ?? DEFAULTS.healSteps,
    healLr: req.healLr ?? DEFAULTS.healLr,
    threads: req.threads ?? (Number.isInteger(envThreads) && envThreads > 0 ? envThreads : null),
    name,
  };
}
