import { existsSync } from "node:fs";
import path from "node:path";
import { NotFoundError, UsageError } from "../../core/errors.js";
import type { BackendContext } from "../../core/events.js";
import { type HfFolderInfo, inspectHfFolder } from "../convert/hfFolder.js";
import { assertFreeName, derivedName } from "../store/derived.js";
import { summariseHfFolder } from "../store/folderInfo.js";
import { type CalibrationInfo, recipeCalibration } from "./calibration.js";
import { bitClass } from "./types.js";
import { type WeightsSource, resolveWeightsSource } from "./weightsSource.js";

/**
 * `slm quantize --method gptq|awq`: GPTQ or AWQ checkpoints of a Hugging Face model for GPU servers
 * (vLLM, TGI, transformers), made by recipes/quantize_hf.py. This file checks a request and settles
 * every setting before Python starts; weightsRun.ts runs it.
 */
export type WeightsMethod = "gptq" | "awq";
export type WeightsDevice = "auto" | "cpu" | "cuda";

export interface WeightsRequest {
  /** An HF folder, a registered HF model or merged fine-tune, a catalog alias or org/repo (pulled --format hf). */
  ref: string;
  method: WeightsMethod;
  bits?: number;
  /** AWQ only: a llama.cpp type (Q4_K_M…): AWQ's scales applied to the float weights, then llama-quantize. */
  type?: string;
  groupSize?: number;
  descAct?: boolean;
  sym?: boolean;
  damp?: number;
  calibration?: string;
  samples?: number;
  seqLen?: number;
  device?: WeightsDevice;
  threads?: number;
  out?: string;
  /** With `type`: llama-quantize's own options. */
  outputTensorType?: string;
  tokenEmbeddingType?: string;
  pure?: boolean;
}

/** Every setting of a run, defaults filled in. */
export interface WeightsSettings {
  method: WeightsMethod;
  bits: number;
  /** -1: one group per output channel. */
  groupSize: number;
  descAct: boolean;
  sym: boolean;
  damp: number;
  zeroPoint: boolean;
  samples: number;
  seqLen: number;
  device: WeightsDevice;
  threads: number | null;
}

export interface WeightsPlan {
  request: WeightsRequest;
  settings: WeightsSettings;
  source: WeightsSource;
  folder: HfFolderInfo;
  calibration: { info: CalibrationInfo; content: string };
  /** The name to register; for `--type` the GGUF's (checked again once llama-quantize names the type). */
  name: string;
  /** AWQ for llama.cpp: the GGUF type to make from the AWQ-scaled weights. */
  ggufType?: string;
}

export const DEFAULTS = { groupSize: 128, damp: 0.01, samples: 128, seqLen: 512 } as const;
/**
 * Bits each method writes. GPTQ's 3-bit packing straddles int32 words and llama.cpp's converter (the
 * way back to GGUF) does not read it, so 3 is left out rather than made unrunnable.
 */
export const METHOD_BITS: Record<WeightsMethod, readonly number[]> = { gptq: [2, 4, 8], awq: [4] };
/**
 * With --type, AWQ's search simulates the grid the GGUF type will use: llama.cpp's K-quants and Q4_0/Q5_0/
 * Q8_0 scale blocks of 32 weights, at the type's nominal bit width.
 */
export const GGUF_GROUP_SIZE = 32;
const AWQ_GGUF_BITS = [4, 5, 6, 8];

function positiveInt(v: number | undefined, flag: string): void {
  if (v !== undefined && (!Number.isInteger(v) || v <= 0)) throw new UsageError(`${flag} must be a positive whole number (got ${v}).`);
}

/** The settings a request asks for, defaults filled in; the usage errors that need no model. */
export function settingsOf(req: WeightsRequest): WeightsSettings {
  const m = req.method;
  const label = m.toUpperCase();
  if (req.type !== undefined && m !== "awq") throw new UsageError(`--type names a llama.cpp type; with --method ${m} it does not apply.`, { hint: "GPTQ writes a GPTQ checkpoint; make a GGUF of it afterwards with `slm quantize <name> --type Q4_K_M`." });
  if (req.type !== undefined && req.bits !== undefined) throw new UsageError("Give --bits or --type, not both: with --method awq, --type makes a GGUF of that type and --bits an AWQ checkpoint.");
  let bits: number;
  if (req.type !== undefined) {
    const b = bitClass(req.type);
    if (b === undefined || !AWQ_GGUF_BITS.includes(b) || req.type.trim().toUpperCase().startsWith("IQ")) throw new UsageError(`--type ${req.type}: AWQ for llama.cpp makes the 4- to 8-bit K- and legacy types (Q4_K_M, Q5_K_M, Q6_K, Q8_0…).`, { hint: "IQ types and types of 3 bits or fewer need an importance matrix: make those with --method llamacpp --calibration FILE." });
    bits = b;
  } else {
    bits = req.bits ?? 4;
    if (!METHOD_BITS[m].includes(bits)) {
      throw new UsageError(`--bits ${req.bits} is not available with --method ${m}: ${label} here writes ${METHOD_BITS[m].join(", ")} bits.`, {
        hint: m === "gptq" && bits === 3 ? "3-bit GPTQ packing is not read by llama.cpp's converter, so slm could not run the result; use --bits 2 or 4." : m === "awq" ? "AWQ checkpoints are 4-bit. For other sizes use --method gptq, or --method awq --type Q5_K_M for a GGUF." : undefined,
      });
    }
  }
  const groupSize = req.groupSize ?? (req.type !== undefined ? GGUF_GROUP_SIZE : DEFAULTS.groupSize);
  if (!Number.isInteger(groupSize) || (groupSize !== -1 && groupSize < 1)) throw new UsageError(`--group-size must be a positive whole number, or -1 for one group per output channel (got ${req.groupSize}).`);
  const damp = req.damp ?? DEFAULTS.damp;
  if (!(damp > 0 && damp <= 1)) throw new UsageError(`--damp must be more than 0 and at most 1 (got ${req.damp}): the share of the Hessian's mean diagonal added to it.`);
  positiveInt(req.samples, "--samples");
  positiveInt(req.seqLen, "--seq-len");
  positiveInt(req.threads, "--threads");
  const envThreads = Number(process.env.SLM_THREADS);
  return {
    method: m,
    bits,
    groupSize,
    descAct: m === "gptq" ? !!req.descAct : false,
    sym: m === "gptq" ? req.sym ?? true : false,
    damp,
    zeroPoint: m === "awq",
    samples: req.samples ?? DEFAULTS.samples,
    seqLen: req.seqLen ?? DEFAULTS.seqLen,
    device: req.device ?? "auto",
    // SLM_THREADS is the machine-wide cap slm run and llama.cpp honour; torch starts one thread per core otherwise.
    threads: req.threads ?? (Number.isInteger(envThreads) && envThreads > 0 ? envThreads : null),
  };
}

/** `<model>-GPTQ-4bit`, `<model>-AWQ-4bit`, or `<model>-AWQ-Q4_K_M` for AWQ made into a GGUF. */
export function weightsSuffix(s: Pick<WeightsSettings, "method" | "bits">, ggufType?: string): string {
  return `${s.method.toUpperCase()}-${ggufType ? ggufType.toUpperCase() : `${s.bits}bit`}`;
}

/**
 * Checks a request against everything that needs no Python: flags, the calibration data (read and
 * validated whole), the name, and the source (pulled first when it is a Hub or catalog reference).
 */
export async function planWeights(req: WeightsRequest, ctx: BackendContext = {}): Promise<WeightsPlan> {
  const settings = settingsOf(req);
  if (!req.calibration) {
    throw new UsageError(`--method ${req.method} needs calibration data: --calibration FILE.`, {
      hint: "Plain text, or chat JSONL rendered with the model's template: a few hundred examples like the model's real use, e.g. --calibration train.jsonl.",
    });
  }
  if (!existsSync(req.calibration)) throw new NotFoundError(`Calibration file not found: ${req.calibration}`);
  if (req.out !== undefined) assertFreeName(req.out);
  const source = await resolveWeightsSource(req.ref, ctx);
  const folder = inspectHfFolder(source.source.path);
  const context = folder.contextLength;
  if (req.seqLen !== undefined && context !== undefined && req.seqLen > context) {
    throw new UsageError(`--seq-len ${req.seqLen} is longer than ${source.source.name}'s context (${context} tokens).`, { hint: `Use --seq-len ${context} or less.` });
  }
  if (req.seqLen === undefined && context !== undefined) settings.seqLen = Math.min(settings.seqLen, context);
  const calibration = recipeCalibration(path.resolve(req.calibration), { name: source.source.name, hasChatTemplate: summariseHfFolder(folder.dir).hasChatTemplate });
  const ggufType = req.type?.trim().toUpperCase();
  const name = req.out ?? derivedName(source.source, weightsSuffix(settings, ggufType));
  if (req.out === undefined) assertFreeName(name);
  return { request: req, settings, source, folder, calibration, name, ggufType };
}
