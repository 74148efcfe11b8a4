import { copyFileSync, existsSync, rmSync, statSync } from "node:fs";
import { statfs } from "node:fs/promises";
import path from "node:path";
import { CancelledError, ExternalError, NotFoundError, SlmError, UsageError } from "../../core/errors.js";
import { emit, type BackendContext, withStep } from "../../core/events.js";
import { exec } from "../../core/exec.js";
import { formatBytes, formatDuration } from "../../core/format.js";
import { readGgufSummary, type GgufSummary } from "../gguf/summary.js";
import { describeVersion, parseVersion, toolVersion, type LlamaCppTool } from "../llamacpp/tools.js";
import { type PreparedSource, prepareSource, sourceToGguf } from "../convert/model.js";
import { assertFreeName, derivedName, derivedWorkDir, installDerived, modelsDir } from "../store/derived.js";
import { refuseOnnx } from "../store/onnxRefusal.js";
import { resolveModel } from "../store/resolve.js";
import { removeUnused } from "../store/cleanup.js";
export { derivedName } from "../store/derived.js";
import type { LineageStep, ModelEntry, StoredFile } from "../store/types.js";
import { type CalibrationInfo, prepareCalibration } from "./calibration.js";
import {
  BITS_TO_TYPE,
  DEFAULT_TYPE,
  type QuantType,
  canonicalTensorType,
  canonicalType,
  isUnquantized,
  nominalBitsPerWeight,
  parseQuantTypes,
  requiresImatrix,
  suggest,
  TENSOR_TYPES,
} from "./types.js";

export interface QuantizeRequest {
  /** Any model reference: registered name, catalog alias, .gguf path. */
  ref: string;
  type?: string;
  bits?: number;
  imatrix?: string;
  calibration?: string;
  /** Most calibration chunks llama-imatrix processes (default: all). */
  chunks?: number;
  outputTensorType?: string;
  tokenEmbeddingType?: string;
  pure?: boolean;
  threads?: number;
  allowRequantize?: boolean;
  out?: string;
  /**
   * Make an IQ or ≤3-bit type without an importance matrix, with a warning instead of the usage error:
   * `--sweep` sets it, because measuring what those types lose without one is part of its answer.
   */
  lowBitWithoutImatrix?: boolean;
}

/** A request checked against everything that needs no llama.cpp tool. */
export interface QuantizePlan {
  request: QuantizeRequest;
  source: ModelEntry;
  /** The source's GGUF header; undefined for a Hugging Face folder, which is converted to F16 first. */
  summary?: GgufSummary;
  /** Weights in the source, from the GGUF header or the safetensors headers (0 when unknown). */
  parameters: number;
  /** For a Hugging Face source (plain, GPTQ or AWQ): the checked Python and converter, so a missing module fails before any tool build. */
  convert?: PreparedSource;
  /** The source's file type by name (F16, Q8_0…); undefined when the header does not say. */
  sourceFileType?: string;
  /** As asked (or from --bits / the default); made canonical against llama-quantize's list when it runs. */
  type: string;
  tools: LlamaCppTool[];
}

export interface QuantizeResult {
  model: ModelEntry;
  type: string;
  source: { name: string; path: string; fileType?: string; size: number; bitsPerWeight?: number };
  sizeBefore: number;
  sizeAfter: number;
  bitsPerWeight?: number;
  imatrix?: ImatrixInfo;
  toolVersion: string;
  seconds: number;
  warnings: string[];
}

/** An importance matrix and where it came from (the --imatrix file, or the --calibration data it was computed from). */
export interface ImatrixInfo {
  path: string;
  source: string;
  calibration?: Omit<CalibrationInfo, "parseSpecial">;
}

/** Checks the flags, the source model and its format before any tool is needed (or built). */
export async function planQuantize(req: QuantizeRequest): Promise<QuantizePlan> {
  if (req.type !== undefined && req.bits !== undefined) throw new UsageError("Give --bits or --type, not both.");
  if (req.bits !== undefined && !BITS_TO_TYPE[req.bits]) throw new UsageError(`--bits must be one of ${Object.keys(BITS_TO_TYPE).join(", ")}.`);
  if (req.imatrix && req.calibration) throw new UsageError("Give --imatrix or --calibration, not both.", { hint: "--calibration computes an importance matrix; --imatrix uses one computed earlier." });
  const type = (req.type ?? (req.bits !== undefined ? BITS_TO_TYPE[req.bits]! : DEFAULT_TYPE)).trim();
  if (!type) throw new UsageError("--type needs a quantization type, e.g. Q4_K_M.");
  assertImatrixGiven(type, req);
  if (req.imatrix && !existsSync(req.imatrix)) throw new NotFoundError(`Importance matrix file not found: ${req.imatrix}`);
  if (req.calibration && !existsSync(req.calibration)) throw new NotFoundError(`Calibration file not found: ${req.calibration}`);
  for (const [flag, value] of [["--output-tensor-type", req.outputTensorType], ["--token-embedding-type", req.tokenEmbeddingType]] as const) {
    if (value !== undefined && !canonicalTensorType(value)) {
      const close = suggest(value, TENSOR_TYPES);
      throw new UsageError(`${flag}: unknown tensor type "${value}".`, { hint: `${close.length ? `Did you mean ${close.join(" or ")}? ` : ""}Tensor types: ${TENSOR_TYPES.join(", ")}.` });
    }
  }
  if (req.out !== undefined) assertFreeName(req.out);

  const source = resolveModel(req.ref);
  refuseOnnx(source, "llama.cpp quantization needs");
  const tools: LlamaCppTool[] = req.calibration ? ["llama-quantize", "llama-imatrix"] : ["llama-quantize"];
  if (source.format !== "gguf") {
    // Converted to F16 first, the way `slm convert` does (GPTQ dequantized by the converter, AWQ by the
    // recipe before it): Python and its modules are checked now.
    const convert = await prepareSource(source);
    return { request: req, source, parameters: convert.convert.folder.parameters ?? 0, convert, sourceFileType: "F16", type, tools };
  }
  if (!existsSync(source.path)) throw new NotFoundError(`The file of ${source.name} is missing: ${source.path}`, { hint: `Run \`slm pull ${source.name}\` again.` });
  // slm's own header reader (a few ms, no node-llama-cpp): it also refuses a truncated file.
  const summary = await readGgufSummary(source.path);
  const sourceFileType = summary.fileType;
  if (!isUnquantized(sourceFileType) && !req.allowRequantize) {
    throw new UsageError(`${source.name} is already quantized (${sourceFileType}); quantizing it again loses more quality than quantizing its F16/BF16/F32 original.`, {
      hint: "Quantize the unquantized GGUF instead, or pass --allow-requantize to do it anyway.",
    });
  }
  return { request: req, source, summary, parameters: summary.parameters, sourceFileType, type, tools };
}

function assertImatrixGiven(type: string, req: QuantizeRequest): void {
  if (!requiresImatrix(type) || req.imatrix || req.calibration || req.lowBitWithoutImatrix) return;
  throw new UsageError(`${type.toUpperCase()} needs an importance matrix: without one, ${type.toUpperCase().startsWith("IQ") ? "IQ types" : "types of 3 bits or fewer"} lose too much quality.`, {
    hint: "Add --calibration FILE (plain text, or chat JSONL rendered with the model's template) to compute one, or --imatrix FILE to use one made by llama-imatrix. Or pick a 4-bit or larger type, e.g. --bits 4.",
  });
}

/** "[  12/ 201] blk.0.attn_q.weight - …" → 12 of 201 tensors. */
export function parseTensorProgress(line: string): { current: number; total: number } | undefined {
  const m = /^\[\s*(\d+)\s*\/\s*(\d+)\s*\]/.exec(line);
  return m ? { current: Number(m[1]), total: Number(m[2]) } : undefined;
}

/** llama-quantize's closing lines: "model size = 12.63 MiB (32.00 BPW)" and "quant size = 3.36 MiB (8.50 BPW)". */
export function parseSizeLine(line: string): { which: "model" | "quant"; mib: number; bpw: number } | undefined {
  const m = /(model|quant) size\s*=\s*([\d.]+)\s*MiB\s*\(([\d.]+)\s*BPW\)/.exec(line);
  return m ? { which: m[1] as "model" | "quant", mib: Number(m[2]), bpw: Number(m[3]) } : undefined;
}

/** llama-imatrix's progress: the chunk count it announces, and "[N]ppl," after each chunk (no newline). */
export function parseImatrixProgress(text: string): { total?: number; done?: number } {
  const total = /computing over (\d+) chunks/.exec(text);
  const chunks = [...text.matchAll(/\[(\d+)\]\s*[\d.]+(?:e[+-]?\d+)?,/g)];
  return { total: total ? Number(total[1]) : undefined, done: chunks.length ? Number(chunks[chunks.length - 1]![1]) : undefined };
}

/**
 * --threads, else SLM_THREADS (the setting `slm run` honours too), else the tools' own default (every
 * core). Oversubscribed cores slow llama.cpp down badly, so a machine-wide cap must reach the tools.
 */
function threadsFor(req: QuantizeRequest): number | undefined {
  if (req.threads) return req.threads;
  const env = Number(process.env.SLM_THREADS);
  return Number.isInteger(env) && env > 0 ? env : undefined;
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new CancelledError();
}

/** Quantization types the installed llama-quantize knows, from its help text. */
export async function listQuantTypes(quantizeBin: string, signal?: AbortSignal): Promise<QuantType[]> {
  // llama-quantize prints its help and exits 1.
  const r = await exec(quantizeBin, ["--help"], { signal, okExitCodes: [0, 1], timeoutMs: 30_000 });
  return parseQuantTypes(`${r.stdout}\n${r.stderr}`);
}

export interface RunOptions {
  tools: Partial<Record<LlamaCppTool, string>>;
  /**
   * An importance matrix already computed for this source (a sweep computes one for all its types):
   * used instead of --calibration / --imatrix, copied into the model's folder, described in its lineage.
   */
  imatrix?: ImatrixInfo;
  /**
   * How the lineage names the input when it is an intermediate in a work folder (AWQ-scaled weights):
   * the model it came from, and the steps that made it. Default: the plan's source itself.
   */
  origin?: { from: string; lineage: LineageStep[] };
}

/**
 * Runs a plan: an importance matrix first when calibration data is given, then llama-quantize into a
 * temporary folder under $SLM_HOME/models, which becomes the model's folder by one rename once the
 * output has been read back. The registry entry comes last, so an interrupted, failed or disk-full
 * run leaves neither a file nor an entry behind.
 */
export async function runQuantize(plan: QuantizePlan, o: RunOptions, ctx: BackendContext = {}): Promise<QuantizeResult> {
  // Counted from here, not from planning: a tools build or a question in between is not quantizing.
  const started = performance.now();
  const req = plan.request;
  const quantizeBin = o.tools["llama-quantize"];
  if (!quantizeBin) throw new SlmError("runQuantize needs the path of llama-quantize.");
  const warnings: string[] = [];
  const warn = (message: string) => {
    warnings.push(message);
    emit(ctx.onEvent, { type: "log", level: "warn", message });
  };

  // Both are subprocess or file work: run them together rather than one after the other.
  const [types, version] = await Promise.all([listQuantTypes(quantizeBin, ctx.signal), toolVersion(quantizeBin, ctx.signal)]);
  let type = plan.type.toUpperCase();
  if (types.length > 0) {
    const canonical = canonicalType(plan.type, types);
    if (!canonical) {
      const names = types.map((t) => t.name);
      const close = suggest(plan.type, names);
      throw new UsageError(`Unknown quantization type "${plan.type}".`, { hint: `${close.length ? `Did you mean ${close.join(" or ")}? ` : ""}llama-quantize knows: ${names.join(", ")}.` });
    }
    type = canonical;
  } else {
    emit(ctx.onEvent, { type: "log", level: "debug", message: "llama-quantize printed no type list; passing the type through unchecked" });
  }
  // An alias or a number may name a low-bit type only now that it is resolved (e.g. "10" → Q2_K).
  if (!o.imatrix) assertImatrixGiven(type, req);
  if (requiresImatrix(type) && !o.imatrix && !req.imatrix && !req.calibration) warn(`${type} made without an importance matrix: expect a large quality loss.`);
  const name = req.out ?? derivedName(plan.source, type);
  if (req.out === undefined) assertFreeName(name);
  if (!isUnquantized(plan.sourceFileType)) warn(`${plan.source.name} is already ${plan.sourceFileType}: requantizing loses more quality than quantizing the F16/F32 original.`);

  // No lock here: work happens in a folder of our own, and the name is claimed atomically at the end
  // (the register step), where a second slm that chose the same name finds it taken.
  await assertDiskSpace(modelsDir(), plan, type);
  const work = derivedWorkDir();
  try {
    return await quantizeIn(work, { plan, type, name, version, tools: o.tools, imatrix: o.imatrix, origin: o.origin, warn, warnings, started }, ctx);
  } finally {
    removeUnused(work);
  }
}

interface Job {
  plan: QuantizePlan;
  type: string;
  name: string;
  version: string;
  tools: Partial<Record<LlamaCppTool, string>>;
  imatrix?: ImatrixInfo;
  origin?: RunOptions["origin"];
  warn: (m: string) => void;
  warnings: string[];
  started: number;
}

async function quantizeIn(work: string, j: Job, ctx: BackendContext): Promise<QuantizeResult> {
  const { plan, type, name } = j;
  const req = plan.request;
  const src = plan.source;
  const step = <T>(id: string, title: string, fn: () => Promise<T>, detail?: (t: T) => string | undefined): Promise<T> => withStep(ctx, id, title, fn, detail);

  // ── A Hugging Face source becomes an F16 GGUF first (deleted before the folder is installed) ──
  let input = src.path;
  let contextLength = plan.summary?.contextLength;
  let sizeBefore = plan.convert ? 0 : statSync(src.path).size;
  let converted: { outtype: "f16"; llamaCppRelease: string; size: number } | undefined;
  if (plan.convert) {
    const c = await sourceToGguf(plan.convert, { outtype: "f16", out: path.join(work, "source-F16.gguf"), work }, ctx);
    input = c.path;
    contextLength = c.contextLength;
    sizeBefore = c.size;
    converted = { outtype: "f16", llamaCppRelease: c.llamaCppRelease, size: c.size };
    throwIfAborted(ctx.signal);
  }

  // ── Importance matrix ──
  let imatrix: ImatrixInfo | undefined;
  let imatrixFile: string | undefined;
  if (j.imatrix) {
    imatrixFile = path.join(work, path.basename(j.imatrix.path));
    copyFileSync(j.imatrix.path, imatrixFile);
    imatrix = { ...j.imatrix, path: imatrixFile };
  } else if (req.calibration) {
    imatrix = await computeImatrix(plan, input, contextLength, j.tools, work, ctx);
    imatrixFile = imatrix.path;
  } else if (req.imatrix) {
    // A copy travels with the model, so its lineage still points at a file after the original moves.
    imatrixFile = path.join(work, `imatrix${path.extname(req.imatrix) || ".gguf"}`);
    copyFileSync(req.imatrix, imatrixFile);
    imatrix = { path: imatrixFile, source: path.resolve(req.imatrix) };
  }
  throwIfAborted(ctx.signal);

  // ── llama-quantize ──
  const outFile = path.join(work, `${name}.gguf`);
  const args = [
    ...(plan.request.allowRequantize ? ["--allow-requantize"] : []),
    ...(req.pure ? ["--pure"] : []),
    ...(imatrixFile ? ["--imatrix", imatrixFile] : []),
    ...(req.outputTensorType ? ["--output-tensor-type", canonicalTensorType(req.outputTensorType)!] : []),
    ...(req.tokenEmbeddingType ? ["--token-embedding-type", canonicalTensorType(req.tokenEmbeddingType)!] : []),
    input,
    outFile,
    type,
    ...(threadsFor(req) ? [String(threadsFor(req))] : []),
  ];
  const sizes: { model?: number; quant?: number } = {};
  let fallbacks = 0;
  const qStarted = performance.now();
  await step(
    "quantize:run",
    `Quantizing ${src.name} to ${type}`,
    () =>
      exec(j.tools["llama-quantize"]!, args, {
        signal: ctx.signal,
        buffer: false,
        tailLines: 30,
        onLine: (line) => {
          const p = parseTensorProgress(line);
          if (p) {
            const secs = (performance.now() - qStarted) / 1000;
            emit(ctx.onEvent, { type: "progress", id: "quantize:run", unit: "tensors", current: p.current, total: p.total, rate: secs > 0.5 ? p.current / secs : undefined });
            if (/falling back/.test(line)) fallbacks++;
            return;
          }
          const s = parseSizeLine(line);
          if (s) sizes[s.which] = s.bpw;
          else if (j.version === "unknown" && parseVersion(line)) j.version = describeVersion(parseVersion(line)!);
          else if (line.trim()) emit(ctx.onEvent, { type: "log", level: "debug", message: line });
        },
      }),
    () => formatDuration((performance.now() - qStarted) / 1000),
  );
  throwIfAborted(ctx.signal);
  if (fallbacks > 0) j.warn(`${fallbacks} tensor(s) have shapes ${type} cannot hold and were stored in a fallback type.`);
  // Reading the header back proves the file is complete before it is registered.
  const outSummary = await readGgufSummary(outFile);
  if (converted) rmSync(input, { force: true });

  // ── Into place, then into the registry ──
  return step("quantize:register", `Registering ${name}`, async () => {
    const finalDir = path.join(modelsDir(), name);
    const modelPath = path.join(finalDir, path.basename(outFile));
    const files: StoredFile[] = [{ path: modelPath, size: statSync(outFile).size }];
    let imatrixFinal: string | undefined;
    if (imatrixFile && imatrix) {
      imatrixFinal = path.join(finalDir, path.basename(imatrixFile));
      files.push({ path: imatrixFinal, size: statSync(imatrixFile).size });
      imatrix.path = imatrixFinal;
    }
    const stepInfo: LineageStep = {
      from: j.origin?.from ?? (src.source.type === "local" ? src.path : src.name),
      method: "quantize",
      parameters: {
        type,
        imatrix: imatrixFinal ?? null,
        imatrixSource: imatrix?.source ?? null,
        ...(imatrix?.calibration ? { calibration: { format: imatrix.calibration.format, examples: imatrix.calibration.examples, sha256: imatrix.calibration.sha256 } } : {}),
        toolVersion: j.version,
        sourceFileType: plan.sourceFileType ?? null,
        ...(req.outputTensorType ? { outputTensorType: canonicalTensorType(req.outputTensorType) } : {}),
        ...(req.tokenEmbeddingType ? { tokenEmbeddingType: canonicalTensorType(req.tokenEmbeddingType) } : {}),
        ...(req.pure ? { pure: true } : {}),
        ...(req.allowRequantize && !isUnquantized(plan.sourceFileType) ? { requantized: true } : {}),
        ...(converted ? { convertedFrom: src.format, intermediate: "F16", llamaCppRelease: converted.llamaCppRelease } : {}),
      },
      at: new Date().toISOString(),
    };
    const entry: ModelEntry = {
      name,
      format: "gguf",
      path: modelPath,
      files,
      source: { type: "derived" },
      quant: type,
      size: files[0]!.size,
      parameters: outSummary.parameters,
      contextLength: outSummary.contextLength,
      architecture: outSummary.architecture,
      lineage: [stepInfo, ...(j.origin?.lineage ?? src.lineage)],
      // A "base + adapter" source stays one: the adapters apply to the quantized base as well.
      ...(src.adapters?.length ? { adapters: src.adapters } : {}),
      createdAt: new Date().toISOString(),
    };
    await installDerived(work, entry);
    return {
      model: entry,
      type,
      source: { name: src.name, path: src.path, fileType: plan.sourceFileType, size: sizeBefore, bitsPerWeight: sizes.model },
      sizeBefore,
      sizeAfter: entry.size,
      bitsPerWeight: sizes.quant ?? (outSummary.parameters > 0 ? (entry.size * 8) / outSummary.parameters : undefined),
      imatrix,
      toolVersion: j.version,
      seconds: (performance.now() - j.started) / 1000,
      warnings: j.warnings,
    };
  }, (r) => r.model.path);
}

/**
 * Renders the plan's --calibration data for `input` (the source GGUF) and runs llama-imatrix on it,
 * writing `<work>/imatrix.gguf`. Exported for the sweep, which computes one matrix for all its types.
 */
export async function computeImatrix(plan: QuantizePlan, input: string, contextLength: number | undefined, tools: RunOptions["tools"], work: string, ctx: BackendContext): Promise<ImatrixInfo> {
  const calibration = plan.request.calibration;
  const imatrixBin = tools["llama-imatrix"];
  if (!calibration) throw new SlmError("computeImatrix needs --calibration data.");
  if (!imatrixBin) throw new SlmError("--calibration needs the path of llama-imatrix.");
  const calibFile = path.join(work, "calibration.txt");
  const calib = await withStep(ctx, "quantize:calibration", `Preparing calibration data from ${path.basename(calibration)}`, () => prepareCalibration(calibration, input, calibFile), (c) =>
    c.format === "chat-jsonl" ? `${c.examples} conversations through the chat template, ${formatBytes(c.chars)}` : `plain text, ${formatBytes(c.chars)}`,
  );
  throwIfAborted(ctx.signal);
  const imatrixFile = path.join(work, "imatrix.gguf");
  await withStep(ctx, "quantize:imatrix", "Computing the importance matrix (llama-imatrix)", () => runImatrix(imatrixBin, input, calibFile, imatrixFile, plan, contextLength, calib, ctx), (chunks) => `${chunks} chunks`);
  rmSync(calibFile, { force: true });
  const { parseSpecial: _p, ...info } = calib;
  return { path: imatrixFile, source: path.resolve(calibration), calibration: { ...info, file: path.resolve(info.file) } };
}

async function runImatrix(bin: string, model: string, calib: string, out: string, plan: QuantizePlan, contextLength: number | undefined, c: CalibrationInfo, ctx: BackendContext): Promise<number> {
  // 512 tokens per chunk is llama.cpp's usual choice; a model trained on less gets its own context.
  const ctxSize = Math.min(512, contextLength ?? 512);
  const args = [
    "-m", model, "-f", calib, "-o", out, "-c", String(ctxSize),
    ...(threadsFor(plan.request) ? ["-t", String(threadsFor(plan.request))] : []),
    ...(plan.request.chunks ? ["--chunks", String(plan.request.chunks)] : []),
    ...(c.parseSpecial ? ["--parse-special"] : []),
  ];
  let seen = "";
  let total: number | undefined;
  let done = 0;
  const t0 = performance.now();
  try {
    await exec(bin, args, {
      signal: ctx.signal,
      buffer: false,
      tailLines: 30,
      onData: (chunk) => {
        // Progress arrives as "[1]7.2,[2]6.9," without newlines: scan a sliding window of raw output.
        seen = (seen + chunk).slice(-4096);
        const p = parseImatrixProgress(seen);
        total ??= p.total;
        if (p.done !== undefined && p.done !== done) {
          done = p.done;
          const secs = (performance.now() - t0) / 1000;
          emit(ctx.onEvent, { type: "progress", id: "quantize:imatrix", unit: "chunks", current: done, total, rate: secs > 0.5 ? done / secs : undefined });
        }
      },
    });
  } catch (err) {
    const short = err instanceof ExternalError ? /you need at least (\d+) tokens/.exec(err.stderrTail) : null;
    if (short) {
      throw new UsageError(`The calibration data is too short: llama-imatrix needs at least ${short[1]} tokens (two chunks of ${ctxSize}).`, { hint: "Give more calibration text, ideally a few hundred kilobytes.", cause: err });
    }
    throw err;
  }
  if (!existsSync(out)) throw new SlmError(`llama-imatrix finished but wrote no importance matrix (${out}).`);
  return total ?? done;
}

/** Refuses to start when the output clearly cannot fit: better than a disk-full failure minutes later. */
async function assertDiskSpace(dir: string, plan: QuantizePlan, type: string): Promise<void> {
  const bpw = nominalBitsPerWeight(type);
  if (!bpw || plan.parameters <= 0) return;
  // One bit per weight of margin covers K-quant mixes and tensors kept in F32 (norms); an HF source
  // also needs room for its F16 conversion while llama-quantize reads it.
  const needed = (plan.parameters * (bpw + 1)) / 8 + (plan.convert ? plan.parameters * 2 : 0);
  let free: number;
  try {
    const s = await statfs(dir);
    free = s.bavail * s.bsize;
  } catch {
    return;
  }
  if (free < needed) {
    throw new SlmError(`Not enough disk space for the ${type} model: it needs about ${formatBytes(needed)} in ${dir}, and ${formatBytes(free)} is free.`, {
      hint: "Free some space, or point SLM_HOME at a larger disk.",
    });
  }
}
