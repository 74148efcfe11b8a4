import { mkdirSync, mkdtempSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { CancelledError, ExternalError, MissingDependencyError, SlmError } from "../../core/errors.js";
import { emit, type BackendContext } from "../../core/events.js";
import { formatDuration } from "../../core/format.js";
import { modelIdComponents } from "../adapters/naming.js";
import { readGgufSummary } from "../gguf/summary.js";
import { displayName, hfFolderModelId } from "../store/naming.js";
import { type PythonEnv, SETUP_PYTHON, describe, requirePythonModules, resolvePython } from "../python/env.js";
import { llamaCppScript, runLlamaCppScript } from "../python/llamaScripts.js";
import { type HfFolderInfo, inspectHfFolder } from "./hfFolder.js";

export const OUTTYPES = ["f16", "bf16", "f32", "q8_0"] as const;
export type Outtype = (typeof OUTTYPES)[number];

export interface ConvertOptions {
  /** A Hugging Face model folder (config.json, weights, tokenizer). */
  input: string;
  outtype: Outtype;
  /** The .gguf file to write; it appears complete, or not at all. */
  out: string;
  /** Which model this is (a repo id or a name, store/naming.ts); default: what the folder holds. */
  name?: string;
}

export interface ConvertResult {
  path: string;
  size: number;
  architecture: string;
  parameters: number;
  contextLength?: number;
  tensors: number;
  fileType?: string;
  /** node-llama-cpp's llama.cpp release whose convert_hf_to_gguf.py did the work. */
  llamaCppRelease: string;
  seconds: number;
}

/** A checked Python and script, so a caller can fail early (before a long tools build) and convert later. */
export interface ConvertEnv {
  python: PythonEnv;
  script: string;
  env: Record<string, string>;
  release: string;
  folder: HfFolderInfo;
}

/**
 * The modules convert_hf_to_gguf.py imports on the way to a llama-family model: torch and numpy for the
 * tensors, transformers (imported unconditionally by its `conversion` package), yaml and tqdm (gguf-py's
 * metadata and progress bar), gguf itself (from the checkout, via PYTHONPATH), and sentencepiece for a
 * tokenizer.model. A tokenizer.json-only model goes through transformers' AutoTokenizer instead.
 */
export function convertModules(folder: Pick<HfFolderInfo, "sentencepiece">): string[] {
  return ["numpy", "torch", "transformers", "yaml", "tqdm", "gguf", ...(folder.sentencepiece ? ["sentencepiece"] : [])];
}

export async function prepareConvert(input: string, ctx: BackendContext = {}): Promise<ConvertEnv> {
  const folder = inspectHfFolder(path.resolve(input));
  const python = await resolvePython();
  const s = await llamaCppScript("convert_hf_to_gguf.py", ctx);
  await requirePythonModules(python, convertModules(folder), "Converting to GGUF (llama.cpp's convert_hf_to_gguf.py)", { signal: ctx.signal, extraEnv: s.env });
  return { python, script: s.script, env: s.env, release: s.release, folder };
}

/** convert_hf_to_gguf.py's log of each tensor it prepares: "blk.0.attn_q.weight, torch.float32 --> F16, shape = {…}". */
export function parseTensorLine(line: string): string | undefined {
  const m = /^INFO:hf-to-gguf:(\S+?),?\s+torch\.\w+\s+-->\s+\w+/.exec(line);
  return m?.[1];
}

const SI: Record<string, number> = { "": 1, k: 1e3, K: 1e3, M: 1e6, G: 1e9, T: 1e12 };

/** gguf-py's tqdm bar: "Writing:  45%|████▌     | 6.00M/13.3M [00:00<00:00, 60.0Mbyte/s]". */
export function parseWriteProgress(line: string): { current: number; total: number } | undefined {
  const m = /^Writing:\s*\d+%.*?([\d.]+)([kKMGT]?)\/([\d.]+)([kKMGT]?)/.exec(line.trim());
  if (!m) return undefined;
  return { current: Number(m[1]) * SI[m[2]!]!, total: Number(m[3]) * SI[m[4]!]! };
}

/**
 * Converts a Hugging Face folder to one GGUF file with the convert_hf_to_gguf.py of the llama.cpp
 * release node-llama-cpp runs. It writes into a temporary folder beside `out` and renames the file into
 * place once its header reads back complete, so a failure or Ctrl+C leaves nothing.
 */
export async function convertHfToGguf(opts: ConvertOptions, ctx: BackendContext = {}, prepared?: ConvertEnv): Promise<ConvertResult> {
  const started = performance.now();
  const c = prepared ?? (await prepareConvert(opts.input, ctx));
  const out = path.resolve(opts.out);
  mkdirSync(path.dirname(out), { recursive: true });
  const work = mkdtempSync(path.join(path.dirname(out), ".convert-"));
  const tmpOut = path.join(work, path.basename(out));
  const id = opts.name ?? hfFolderModelId(c.folder.dir);
  const title = `Converting ${id} to GGUF (${opts.outtype.toUpperCase()})`;
  emit(ctx.onEvent, { type: "step", id: "convert:run", status: "start", title });
  try {
    let seen = 0;
    let writing = false;
    // Rates count from the converter's start, not from the module check before it.
    const runStarted = performance.now();
    try {
      await runLlamaCppScript(c.python.python, c, [c.folder.dir, "--outtype", opts.outtype, "--outfile", tmpOut, "--model-name", displayName(id), "--metadata", nameOverride(work, id, c.folder.parameters)], ctx, (line) => {
        const secs = (performance.now() - runStarted) / 1000;
        if (parseTensorLine(line)) {
          seen++;
          // The folder's tensor count is a close total: the converter may add (rope factors) or drop (tied embeddings) a few.
          const total = c.folder.tensors !== undefined ? Math.max(c.folder.tensors, seen) : undefined;
          emit(ctx.onEvent, { type: "progress", id: "convert:run", unit: "tensors", current: seen, total, rate: secs > 0.5 ? seen / secs : undefined });
          return true;
        }
        const w = parseWriteProgress(line);
        if (!w) return false;
        if (!writing) emit(ctx.onEvent, { type: "step", id: "convert:run", status: "start", title: `${title}: writing` });
        writing = true;
        emit(ctx.onEvent, { type: "progress", id: "convert:run", unit: "bytes", current: w.current, total: w.total });
        return true;
      });
    } catch (err) {
      throw explain(err, c);
    }
    if (ctx.signal?.aborted) throw new CancelledError();
    // Reading the header back proves the file is whole before anyone sees it.
    const summary = await readGgufSummary(tmpOut);
    renameSync(tmpOut, out);
    const seconds = (performance.now() - started) / 1000;
    const size = statSync(out).size;
    emit(ctx.onEvent, { type: "step", id: "convert:run", status: "done", title, detail: `${summary.tensorCount} tensors, ${formatDuration(seconds)}` });
    return { path: out, size, architecture: summary.architecture, parameters: summary.parameters, contextLength: summary.contextLength, tensors: summary.tensorCount, fileType: summary.fileType, llamaCppRelease: c.release, seconds };
  } catch (err) {
    emit(ctx.onEvent, { type: "step", id: "convert:run", status: "fail", title, detail: err instanceof CancelledError ? "cancelled" : undefined });
    throw err;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * The naming keys, written as the converter would derive them from a folder named after the model
 * (gguf-py's get_model_id_components, ported in adapters/naming.ts). Without them it reads the folder's
 * name: an HF-cache snapshot's commit hash became general.finetune, a folder called "hf" the name "Hf".
 * A null clears what the heuristics guessed; size_label then comes from the parameter count.
 */
function nameOverride(work: string, id: string, parameters: number | undefined): string {
  const n = modelIdComponents(id, parameters ?? 0);
  const file = path.join(work, "metadata.json");
  const keys = { name: n.name, organization: n.organization, basename: n.basename, finetune: n.finetune, version: n.version, size_label: n.sizeLabel };
  writeFileSync(file, JSON.stringify(Object.fromEntries(Object.entries(keys).map(([k, v]) => [`general.${k}`, v ?? null]))));
  return file;
}

/** Turns the converter's usual failures into errors that say what to do. */
function explain(err: unknown, c: ConvertEnv): unknown {
  if (!(err instanceof ExternalError)) return err;
  const tail = err.stderrTail;
  const missing = /No module named '([^']+)'/.exec(tail);
  if (missing) {
    return new MissingDependencyError(`convert_hf_to_gguf.py needs the Python module ${missing[1]}, which ${describe(c.python)} cannot import.`, SETUP_PYTHON, { cause: err });
  }
  const arch = /Model (\S+) is not supported/.exec(tail);
  if (arch) return new SlmError(`llama.cpp's converter does not support the architecture ${arch[1]} (in ${c.folder.dir}).`, { exitCode: err.exitCode, hint: "Look for a GGUF of this model on the Hub instead.", cause: err });
  return err;
}
