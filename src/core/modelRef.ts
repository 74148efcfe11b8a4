import { existsSync, readFileSync, statSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import { type CatalogEntry, findCatalogEntry, suggestNames } from "./catalog.js";
import { NotFoundError, UsageError } from "./errors.js";
import { ONNX_DTYPES, type OnnxDtype, isOnnxDtype } from "../backends/onnx/layout.js";

/** What a model reference on the command line points at, before anything is downloaded. */
export type ModelRef =
  | { kind: "registered"; name: string; dtype?: OnnxDtype }
  | { kind: "catalog"; entry: CatalogEntry; quant?: string }
  /** `dtype`: the suffix read as an ONNX variant (org/repo:q4), which only an ONNX pull of the repo takes. */
  | { kind: "hub"; repo: string; quant?: string; dtype?: OnnxDtype }
  | { kind: "gguf-file"; path: string }
  /** A folder with config.json: Hugging Face weights, or an ONNX export (store/resolve.ts tells which). */
  | { kind: "hf-folder"; path: string; dtype?: OnnxDtype };

const REPO_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*\/[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const QUANT = /^[A-Za-z0-9_]+$/;

export function isValidRepoId(repo: string): boolean {
  return REPO_ID.test(repo) && !repo.includes("..") && repo.length <= 96;
}

/** A reference written as a path (rather than a name): it is looked up on the filesystem. */
export function looksLikePath(ref: string): boolean {
  return ref.startsWith("./") || ref.startsWith("../") || ref.startsWith("/") || ref.startsWith("~/") || ref === "." || ref.toLowerCase().endsWith(".gguf");
}

/** The base model a PEFT adapter folder names (adapter_config.json's base_model_name_or_path), if readable. */
function peftBase(dir: string): string | undefined {
  try {
    const base = (JSON.parse(readFileSync(path.join(dir, "adapter_config.json"), "utf8")) as { base_model_name_or_path?: unknown }).base_model_name_or_path;
    return typeof base === "string" && base ? base : undefined;
  } catch {
    return undefined;
  }
}

function localRef(ref: string): ModelRef {
  const p = path.resolve(ref.startsWith("~/") ? path.join(homedir(), ref.slice(2)) : ref);
  if (!existsSync(p)) throw new NotFoundError(`No such file or folder: ${p}`);
  if (statSync(p).isDirectory()) {
    if (!existsSync(path.join(p, "config.json"))) {
      if (existsSync(path.join(p, "adapter_config.json"))) {
        throw new UsageError(`${p} is a PEFT adapter folder, not a model: an adapter runs on top of its base model.`, { hint: `Load it with \`slm run ${peftBase(p) ?? "<base>"} --lora ${ref}\` (also chat, serve, eval, bench).` });
      }
      throw new UsageError(`${p} is a folder but not a Hugging Face model folder (it has no config.json).`);
    }
    return { kind: "hf-folder", path: p };
  }
  if (!p.toLowerCase().endsWith(".gguf")) throw new UsageError(`${p} is not a .gguf file.`, { hint: "Give a .gguf file, a model folder with config.json, or a model name." });
  return { kind: "gguf-file", path: p };
}

function splitQuant(ref: string): { base: string; quant?: string } {
  const i = ref.lastIndexOf(":");
  if (i <= 0) return { base: ref };
  const quant = ref.slice(i + 1);
  if (!QUANT.test(quant)) throw new UsageError(`"${quant}" in "${ref}" is not a quantization type (e.g. Q4_K_M, Q8_0, F16).`);
  return { base: ref.slice(0, i), quant: quant.toUpperCase() };
}

export interface ParseOptions {
  /** false: names only, never a local file or folder (what a server's clients may ask for). */
  files?: boolean;
  /** Whether a registered name is an ONNX model, whose `NAME:q4` picks a variant (GGUF names keep `:QUANT`). */
  isOnnx?: (name: string) => boolean;
  /** The command takes Hugging Face weights only (export, GPTQ/AWQ): "unknown model" suggests a local HF folder, not a .gguf file. */
  weightsOnly?: boolean;
}

/**
 * `NAME:q3` where NAME is an ONNX model (registered, or a folder with onnx/): the suffix can only be meant
 * as a dtype, so a wrong one is a usage error listing the vocabulary, not "unknown model" or "no such file".
 */
function refuseUnknownDtype(ref: string, isRegistered: (name: string) => boolean, o: ParseOptions): void {
  const i = ref.lastIndexOf(":");
  if (i <= 0) return;
  const base = ref.slice(0, i);
  const onnxName = isRegistered(base) && o.isOnnx?.(base);
  const onnxFolder = o.files !== false && !existsSync(ref) && (looksLikePath(base) || existsSync(base)) && existsSync(path.join(base, "onnx"));
  if (onnxName || onnxFolder) throw new UsageError(`"${ref.slice(i + 1)}" in ${ref} is not an ONNX dtype.`, { hint: `ONNX dtypes: ${ONNX_DTYPES.join(", ")} (\`slm info ${base}\` lists the ones it has).` });
}

/** `NAME:q4` → {base NAME, dtype q4} when the suffix is one of the ONNX dtypes (any case). */
function splitDtype(ref: string): { base: string; dtype: OnnxDtype } | undefined {
  const i = ref.lastIndexOf(":");
  const dtype = i > 0 ? ref.slice(i + 1).toLowerCase() : "";
  return isOnnxDtype(dtype) ? { base: ref.slice(0, i), dtype } : undefined;
}

/**
 * Parses a reference. Order matters: a registered name wins (so `slm info phi-3` means what was pulled),
 * then explicit `hf:` repos, paths, catalog aliases, and finally bare `org/repo`.
 */
export function parseModelRef(ref: string, isRegistered: (name: string) => boolean = () => false, registeredNames: () => string[] = () => [], o: ParseOptions = {}): ModelRef {
  const trimmed = ref.trim();
  if (!trimmed) throw new UsageError("A model reference is required (a catalog name like qwen2.5-0.5b, org/repo, or a .gguf file).");
  if (isRegistered(trimmed)) return { kind: "registered", name: trimmed };
  const onnx = splitDtype(trimmed);
  if (!onnx) refuseUnknownDtype(trimmed, isRegistered, o);
  if (onnx && isRegistered(onnx.base) && o.isOnnx?.(onnx.base)) return { kind: "registered", name: onnx.base, dtype: onnx.dtype };
  if (onnx && o.files !== false && !existsSync(trimmed) && (looksLikePath(onnx.base) || existsSync(onnx.base))) {
    const local = localRef(onnx.base);
    if (local.kind !== "hf-folder") throw new UsageError(`":${onnx.dtype}" picks a variant of an ONNX model folder; ${onnx.base} is a file.`);
    return { ...local, dtype: onnx.dtype };
  }
  if (trimmed.startsWith("hf:") || trimmed.startsWith("hf.co/") || trimmed.startsWith("huggingface.co/")) {
    const { base, quant } = splitQuant(trimmed.replace(/^(hf:|hf\.co\/|huggingface\.co\/)/, ""));
    if (!isValidRepoId(base)) throw new UsageError(`"${base}" is not a Hugging Face repository id (expected org/name).`);
    return { kind: "hub", repo: base, quant, ...(onnx ? { dtype: onnx.dtype } : {}) };
  }
  if (o.files !== false && (looksLikePath(trimmed) || existsSync(trimmed))) return localRef(trimmed);
  const { base, quant } = splitQuant(trimmed);
  const entry = findCatalogEntry(base);
  if (entry) return { kind: "catalog", entry, quant };
  if (base.includes("/")) {
    if (!isValidRepoId(base)) throw new UsageError(`"${base}" is not a Hugging Face repository id (expected org/name).`);
    return { kind: "hub", repo: base, quant, ...(onnx ? { dtype: onnx.dtype } : {}) };
  }
  const suggestions = suggestNames(base, registeredNames());
  throw new NotFoundError(`Unknown model "${trimmed}".`, {
    hint: suggestions.length > 0
      ? `Did you mean ${suggestions.map((s) => `"${s}"`).join(" or ")}? \`slm list --catalog\` shows all names.`
      : `Use a catalog name (\`slm list --catalog\`), org/repo from the Hugging Face Hub, or ${o.weightsOnly ? "a local Hugging Face model folder" : "a local .gguf file or model folder"}.`,
  });
}

/**
 * The name a pulled reference is registered under, so `phi-3`, `phi-3-mini` and `phi-3-mini:Q4_K_M`
 * (the default quant) all find the same pull.
 */
export function registryNameFor(ref: ModelRef, format: "gguf" | "hf" = "gguf"): string | undefined {
  switch (ref.kind) {
    case "registered":
      return ref.name;
    case "catalog": {
      if (format === "hf") return `${ref.entry.id}:hf`;
      const def = ref.entry.gguf?.defaultQuant ?? ref.entry.builtin?.quant;
      return !ref.quant || ref.quant === def ? ref.entry.id : `${ref.entry.id}:${ref.quant}`;
    }
    case "hub":
      return ref.quant ? `${ref.repo}:${ref.quant}` : ref.repo;
    default:
      return undefined;
  }
}
