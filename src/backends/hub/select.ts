import picomatch from "picomatch";
import { NotFoundError, UsageError } from "../../core/errors.js";
import type { RepoFile } from "./api.js";
import { type OnnxDtype, DTYPE_SUFFIX, defaultDtype, variantFile } from "../onnx/layout.js";
import { isExternalDataOf, onnxInfoOf } from "../onnx/scan.js";
import { isModelGguf, normalizeQuant, quantOfFile, splitInfo } from "./quant.js";

export type PullFormat = "gguf" | "hf" | "onnx";

export interface Selection {
  format: PullFormat;
  files: RepoFile[];
  /** The file a loader opens: the (first split of the) GGUF, or undefined for HF folders. */
  entry?: string;
  quant?: string;
  /** For ONNX pulls: the variant taken. */
  dtype?: OnnxDtype;
}

/** What an HF-format pull takes when no --include is given: weights, configs and tokenizers. */
export const DEFAULT_HF_INCLUDE = ["*.safetensors", "*.json", "tokenizer.model", "*.tiktoken", "merges.txt", "vocab.txt", "*.jinja"];

/** fnmatch-style, like huggingface_hub: a pattern without "/" also matches the base name in any folder. */
function matcher(patterns: string[]): (p: string) => boolean {
  const tests = patterns.map((pat) => {
    const m = picomatch(pat, { dot: true });
    return pat.includes("/") ? m : (p: string) => m(p) || m(p.split("/").pop() ?? p);
  });
  return (p) => tests.some((t) => t(p));
}

export function availableQuants(files: RepoFile[]): string[] {
  const set = new Set(files.filter((f) => isModelGguf(f.path)).map((f) => quantOfFile(f.path)).filter((q): q is string => !!q));
  return [...set].sort();
}

export function selectGguf(repo: string, files: RepoFile[], quant: string | undefined, fallbackQuant = "Q4_K_M"): Selection {
  const ggufs = files.filter((f) => isModelGguf(f.path));
  if (ggufs.length === 0) throw new NotFoundError(`No GGUF files in ${repo}${hasHfWeights(files) ? "; try --format hf" : ""}.`, { hint: repoHas(files) });
  let wanted = quant ? normalizeQuant(quant) : undefined;
  if (!wanted) {
    const types = availableQuants(ggufs);
    const groups = new Set(ggufs.map((f) => splitInfo(f.path)?.group ?? f.path));
    wanted = groups.size === 1 ? quantOfFile(ggufs[0]!.path) : types.includes(fallbackQuant) ? fallbackQuant : undefined;
    if (!wanted && groups.size === 1) return finishGguf(repo, ggufs, undefined);
    if (!wanted) throw new UsageError(`${repo} has several GGUF files; say which quantization to pull.`, { hint: `Available: ${types.join(", ")}. For example: slm pull hf:${repo}:${types[0] ?? "Q8_0"}` });
  }
  const matches = ggufs.filter((f) => quantOfFile(f.path) === wanted);
  if (matches.length === 0) {
    const types = availableQuants(ggufs);
    throw new NotFoundError(`${repo} has no ${wanted} file.`, { hint: types.length > 0 ? `Available quantizations: ${types.join(", ")}.` : "No file name in it names a quantization type." });
  }
  return finishGguf(repo, matches, wanted);
}

/** Keeps one model (a single file or one complete set of splits); the shortest name wins a tie. */
function finishGguf(repo: string, matches: RepoFile[], quant: string | undefined): Selection {
  const groups = new Map<string, RepoFile[]>();
  for (const f of matches) {
    const key = splitInfo(f.path)?.group ?? f.path;
    groups.set(key, [...(groups.get(key) ?? []), f]);
  }
  const [, files] = [...groups.entries()].sort((a, b) => a[0].length - b[0].length || a[0].localeCompare(b[0]))[0]!;
  files.sort((a, b) => a.path.localeCompare(b.path));
  const split = splitInfo(files[0]!.path);
  if (split) {
    const have = new Set(files.map((f) => splitInfo(f.path)?.index));
    const missing = Array.from({ length: split.count }, (_, i) => i + 1).filter((i) => !have.has(i));
    if (missing.length > 0 || files.length !== split.count) throw new NotFoundError(`${repo}: split GGUF ${split.group} is incomplete (missing part ${missing.join(", ")} of ${split.count}).`);
  }
  return { format: "gguf", files, entry: files[0]!.path, quant };
}

export function selectHf(repo: string, files: RepoFile[], include: string[] | undefined, exclude: string[] | undefined): Selection {
  const inc = matcher(include && include.length > 0 ? include : DEFAULT_HF_INCLUDE);
  const exc = exclude && exclude.length > 0 ? matcher(exclude) : () => false;
  const chosen = files.filter((f) => inc(f.path) && !exc(f.path));
  // Without --include the first question is whether the repo has HF weights at all, not whether globs matched.
  if (!include?.length && !hasHfWeights(files)) {
    const gguf = files.some((f) => isModelGguf(f.path));
    throw new NotFoundError(`No Hugging Face weights (.safetensors) in ${repo}${gguf ? "; try --format gguf" : ""}.`, {
      hint: `${repoHas(files)}${gguf ? "" : " Pass --include patterns for the files you want."}`,
    });
  }
  if (chosen.length === 0 || (!include?.length && !chosen.some((f) => f.path.endsWith(".safetensors")))) {
    throw new NotFoundError(`No ${chosen.length === 0 ? "file" : ".safetensors file"} in ${repo} matches the --include/--exclude patterns.`, { hint: repoHas(files) });
  }
  return { format: "hf", files: chosen };
}

/**
 * What an ONNX model folder needs besides its graph: the configs, the tokenizer and the chat template at the
 * top of the repository (never the other variants, nor a README's images).
 */
const ONNX_SIDE_FILES = ["*.json", "*.jinja", "tokenizer.model"];

/** The ONNX variants a repository listing holds under onnx/ ("model" or "decoder_model_merged"), if any. */
export function onnxVariantsOf(files: RepoFile[]) {
  return onnxInfoOf(files.filter((f) => f.path.startsWith("onnx/") && !f.path.slice(5).includes("/")).map((f) => f.path.slice(5)));
}

/**
 * One variant of an ONNX repository (onnx-community, Optimum): its graph, that graph's external-data
 * files, and the top-level configs and tokenizer. `dtype` undefined: the CPU default among those present.
 */
export function selectOnnx(repo: string, files: RepoFile[], dtype: OnnxDtype | undefined): Selection {
  const info = onnxVariantsOf(files);
  if (!info) {
    const other = files.some((f) => isModelGguf(f.path)) ? "; try --format gguf" : hasHfWeights(files) ? "; try --format hf" : "";
    throw new NotFoundError(`No ONNX model (onnx/model*.onnx) in ${repo}${other}.`, { hint: repoHas(files) });
  }
  const wanted = dtype ?? defaultDtype(info.dtypes)!;
  if (!info.dtypes.includes(wanted)) {
    throw new NotFoundError(`${repo} has no ${wanted} variant (onnx/${info.base}${DTYPE_SUFFIX[wanted]}.onnx).`, { hint: `It has ${info.dtypes.join(", ")}. For example: slm pull ${repo} --format onnx --dtype ${defaultDtype(info.dtypes)}` });
  }
  const graph = variantFile(wanted, info.base);
  const side = matcher(ONNX_SIDE_FILES);
  const chosen = files.filter((f) => f.path === graph || isExternalDataOf(f.path, graph) || (!f.path.includes("/") && side(f.path)));
  if (!chosen.some((f) => f.path === "config.json")) throw new NotFoundError(`${repo} has ONNX files but no config.json; slm needs it to know the model.`, { hint: repoHas(files) });
  return { format: "onnx", files: chosen.sort((a, b) => a.path.localeCompare(b.path)), dtype: wanted };
}

function hasHfWeights(files: RepoFile[]): boolean {
  return files.some((f) => f.path.endsWith(".safetensors"));
}

/** "It has 2 GGUF files (F16, Q8_0), README.md." — what a user can pull from the repo instead. */
export function repoHas(files: RepoFile[]): string {
  if (files.length === 0) return "The repository is empty.";
  const ggufs = files.filter((f) => isModelGguf(f.path));
  const weights = files.filter((f) => f.path.endsWith(".safetensors"));
  const onnx = files.filter((f) => f.path.startsWith("onnx/"));
  const rest = files.filter((f) => !ggufs.includes(f) && !weights.includes(f) && !onnx.includes(f)).map((f) => f.path);
  const parts: string[] = [];
  if (ggufs.length) parts.push(`${ggufs.length} GGUF file${ggufs.length > 1 ? "s" : ""}${availableQuants(ggufs).length ? ` (${availableQuants(ggufs).join(", ")})` : ""}`);
  if (weights.length) parts.push(`${weights.length} .safetensors file${weights.length > 1 ? "s" : ""}`);
  const variants = onnxVariantsOf(files);
  if (onnx.length) parts.push(`${onnx.length} file${onnx.length > 1 ? "s" : ""} under onnx/${variants ? ` (ONNX ${variants.dtypes.join(", ")})` : ""}`);
  parts.push(...rest.slice(0, 8));
  if (rest.length > 8) parts.push(`${rest.length - 8} more`);
  return `It has ${parts.join(", ")}.`;
}
