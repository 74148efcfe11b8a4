import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { NotFoundError, UsageError } from "../../core/errors.js";
import { type OnnxDtype, defaultDtype, dtypeOfFile, variantFile } from "./layout.js";
import { readOnnxHeader } from "./proto.js";

/** What loading an ONNX folder needs, read and checked before onnxruntime is touched. */
export interface OnnxFolder {
  dir: string;
  config: Record<string, unknown>;
  tokenizerJson: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
  generationConfig: Record<string, unknown>;
  dtype: OnnxDtype;
  /** Absolute path of the .onnx file of that dtype. */
  file: string;
  /** The variants present. */
  dtypes: OnnxDtype[];
  /** Token ids that end generation: generation_config's eos_token_id, else config.json's. */
  eos: number[];
}

function readJson(file: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new UsageError(`${file} is not valid JSON (${(err as Error).message}); the ${what} cannot be read.`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new UsageError(`${file} is not a JSON object; the ${what} cannot be read.`);
  return value as Record<string, unknown>;
}

function readOptionalJson(file: string, what: string): Record<string, unknown> {
  return existsSync(file) ? readJson(file, what) : {};
}

/** config.json's own words for what a model is: "BertModel (bert)". */
function describeArchitecture(config: Record<string, unknown>): string {
  const arch = Array.isArray(config.architectures) ? String(config.architectures[0]) : undefined;
  const type = typeof config.model_type === "string" ? config.model_type : undefined;
  return [arch, type && `(${type})`].filter(Boolean).join(" ") || "an unnamed architecture";
}

/**
 * slm generates text with decoder-only language models. Encoder-only models (BERT…), encoder-decoders
 * (T5, Whisper) and vision/multimodal ones have other inputs and outputs; they are refused by what
 * config.json says before any session is made.
 */
export function checkDecoderOnly(config: Record<string, unknown>, dir: string): void {
  const archs = Array.isArray(config.architectures) ? config.architectures.map(String) : [];
  const causal = archs.some((a) => /(ForCausalLM|LMHeadModel)$/.test(a));
  const reasons: string[] = [];
  if (config.is_encoder_decoder === true) reasons.push("an encoder-decoder model");
  if (config.vision_config !== undefined || config.image_token_id !== undefined || config.image_token_index !== undefined) reasons.push("a vision model");
  if (archs.length > 0 && !causal) reasons.push("not a causal language model");
  if (reasons.length > 0) {
    throw new UsageError(`${dir} holds ${describeArchitecture(config)}: ${reasons.join(", ")}. slm runs decoder-only text generation models (…ForCausalLM) on onnxruntime.`, {
      hint: "Pick a text-generation model (e.g. onnx-community/SmolLM2-135M-Instruct-ONNX).",
    });
  }
}

/** The variants under onnx/ named after `base` (transformers.js's file names). */
export function presentDtypes(dir: string, base: string): OnnxDtype[] {
  const onnxDir = path.join(dir, "onnx");
  if (!existsSync(onnxDir)) return [];
  return readdirSync(onnxDir)
    .map((f) => dtypeOfFile(f, base))
    .filter((d): d is OnnxDtype => d !== undefined);
}

function eosIds(...sources: Record<string, unknown>[]): number[] {
  for (const s of sources) {
    const v = s.eos_token_id;
    if (typeof v === "number") return [v];
    if (Array.isArray(v) && v.every((x) => typeof x === "number")) return v as number[];
  }
  return [];
}

/**
 * Reads and checks an ONNX model folder: config.json (a decoder-only model), tokenizer.json, the variant
 * asked for (or the CPU default among those present). Every problem is a UsageError naming the file.
 */
export function readOnnxFolder(dir: string, o: { dtype?: OnnxDtype; base?: string; name?: string } = {}): OnnxFolder {
  const name = o.name ?? dir;
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new NotFoundError(`ONNX model folder not found: ${dir}`);
  const configFile = path.join(dir, "config.json");
  if (!existsSync(configFile)) throw new UsageError(`${name}: ${configFile} is missing; an ONNX model folder needs the model's config.json.`);
  const config = readJson(configFile, "model configuration");
  checkDecoderOnly(config, dir);
  const tokenizerFile = path.join(dir, "tokenizer.json");
  if (!existsSync(tokenizerFile)) {
    const slow = ["tokenizer.model", "vocab.json"].filter((f) => existsSync(path.join(dir, f)));
    throw new UsageError(`${name} has no tokenizer.json${slow.length > 0 ? ` (only ${slow.join(", ")})` : ""}; slm's ONNX runtime reads the Hugging Face fast tokenizer file.`, {
      hint: "Save it with transformers (AutoTokenizer.from_pretrained(folder).save_pretrained(folder)), or export the model with `slm export <model> --format onnx`, which writes it.",
    });
  }
  const tokenizerJson = readJson(tokenizerFile, "tokenizer");
  const tokenizerConfig = readOptionalJson(path.join(dir, "tokenizer_config.json"), "tokenizer configuration");
  const generationConfig = readOptionalJson(path.join(dir, "generation_config.json"), "generation configuration");
  const base = o.base ?? (presentDtypes(dir, "model").length > 0 ? "model" : "decoder_model_merged");
  const dtypes = presentDtypes(dir, base);
  if (dtypes.length === 0) throw new UsageError(`${name} has no ONNX model file: expected ${variantFile("fp32", base)} or another variant (${variantFile("q4", base)}…) in ${dir}.`);
  const dtype = o.dtype ?? defaultDtype(dtypes)!;
  if (!dtypes.includes(dtype)) {
    throw new UsageError(`${name} has no ${dtype} variant (${variantFile(dtype, base)}); it has ${dtypes.join(", ")}.`, { hint: `Pick one of those with --dtype, or add it: slm export <model> --format onnx --dtype ${dtype}.` });
  }
  const file = path.join(dir, variantFile(dtype, base));
  checkExternalData(file, name);
  return { dir, config, tokenizerJson, tokenizerConfig, generationConfig, dtype, file, dtypes, eos: eosIds(generationConfig, config) };
}

/**
 * The external data files the graph names (`model.onnx_data`…) are there: onnxruntime's own error for a
 * missing one does not name it, and a truncated-file hint would send the user after the wrong file. A
 * graph whose header cannot be read is left to onnxruntime, whose error says what is wrong with it.
 */
function checkExternalData(file: string, name: string): void {
  let external: string[];
  try {
    external = readOnnxHeader(file).externalData;
  } catch {
    return;
  }
  const missing = external.filter((f) => !existsSync(path.join(path.dirname(file), f)));
  if (missing.length === 0) return;
  throw new UsageError(`${name}: ${path.basename(file)} keeps its weights in ${missing.join(", ")}, which ${missing.length === 1 ? "is" : "are"} missing from ${path.dirname(file)}.`, {
    hint: "Copy that file beside the .onnx file, or pull or export the model again (a pull fetches each variant's external data with it).",
  });
}
