import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { SlmError, UsageError } from "../../core/errors.js";
import type { Example, Message } from "../../core/datasets/formats.js";
import { readGgufHeader } from "../gguf/reader.js";

/**
 * A model's Jinja chat template with the special-token texts it refers to. Fine-tuning renders
 * conversations with it in TypeScript (for the dataset summary) and hands the same string to the
 * recipe, so training sees exactly the text that inference with the base GGUF produces.
 */
export interface ChatTemplate {
  template: string;
  /** Where it was read, for messages: "tokenizer_config.json", "GGUF metadata"… */
  source: string;
  bosToken?: string;
  eosToken?: string;
}

/** HF writes special tokens as a string or as {"content": …}. */
function tokenText(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (typeof v === "object" && v !== null && typeof (v as { content?: unknown }).content === "string") return (v as { content: string }).content;
  return undefined;
}

function readJson(file: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  } catch (err) {
    throw new SlmError(`${file} is not valid JSON (${(err as Error).message}).`);
  }
}

/** A template field: a string, or a list of named templates of which "default" is the chat one. */
function pickTemplate(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (Array.isArray(v)) {
    const named = v as { name?: unknown; template?: unknown }[];
    const t = (named.find((x) => x.name === "default") ?? named[0])?.template;
    return typeof t === "string" ? t : undefined;
  }
  return undefined;
}

/**
 * The template of a Hugging Face model folder. Newer transformers save it beside the tokenizer
 * (chat_template.jinja or chat_template.json); older ones inside tokenizer_config.json.
 */
export function hfChatTemplate(folder: string): ChatTemplate | undefined {
  const configFile = path.join(folder, "tokenizer_config.json");
  const config = existsSync(configFile) ? readJson(configFile) : {};
  const tokens = { bosToken: tokenText(config.bos_token), eosToken: tokenText(config.eos_token) };
  const jinja = path.join(folder, "chat_template.jinja");
  if (existsSync(jinja)) return { template: readFileSync(jinja, "utf8"), source: "chat_template.jinja", ...tokens };
  const json = path.join(folder, "chat_template.json");
  const fromJson = existsSync(json) ? pickTemplate(readJson(json).chat_template) : undefined;
  if (fromJson) return { template: fromJson, source: "chat_template.json", ...tokens };
  const inline = pickTemplate(config.chat_template);
  return inline ? { template: inline, source: "tokenizer_config.json", ...tokens } : undefined;
}

/** The template in a GGUF's metadata, with the texts of its BOS and EOS tokens from its vocabulary. */
export function ggufChatTemplate(file: string): ChatTemplate | undefined {
  const meta = readGgufHeader(file, { arrayLimit: Number.MAX_SAFE_INTEGER }).metadata;
  const template = meta.get("tokenizer.chat_template");
  if (typeof template !== "string") return undefined;
  const tokens = meta.get("tokenizer.ggml.tokens");
  const text = (key: string): string | undefined => {
    const id = meta.get(key);
    const list = typeof tokens === "object" ? tokens.values : undefined;
    const t = typeof id === "number" || typeof id === "bigint" ? list?.[Number(id)] : undefined;
    return typeof t === "string" ? t : undefined;
  };
  return { template, source: "GGUF metadata", bosToken: text("tokenizer.ggml.bos_token_id"), eosToken: text("tokenizer.ggml.eos_token_id") };
}

const compiled = new Map<string, Promise<{ render(items: Record<string, unknown>): string }>>();

async function compile(t: ChatTemplate) {
  let p = compiled.get(t.template);
  if (!p) {
    p = import("@huggingface/jinja").then(({ Template }) => {
      try {
        return new Template(t.template);
      } catch (err) {
        throw new SlmError(`The chat template (${t.source}) does not parse: ${(err as Error).message}`);
      }
    });
    compiled.set(t.template, p);
  }
  return p;
}

/** One conversation as the template writes it (transformers' apply_chat_template, tokenize=False). */
export async function renderChat(t: ChatTemplate, messages: readonly Message[], o: { addGenerationPrompt?: boolean } = {}): Promise<string> {
  const template = await compile(t);
  try {
    return template.render({ messages, bos_token: t.bosToken ?? "", eos_token: t.eosToken ?? "", add_generation_prompt: o.addGenerationPrompt ?? false });
  } catch (err) {
    throw new UsageError(`The chat template (${t.source}) cannot render this conversation: ${(err as Error).message}`);
  }
}

/**
 * The full training text of one normalised example: a chat through the template; raw prompt and
 * completion or text between BOS and EOS, as the recipe tokenizes them.
 */
export async function renderExample(t: ChatTemplate | undefined, e: Example, special: { bos?: string; eos?: string } = {}): Promise<string> {
  if ("messages" in e) {
    if (!t) throw new UsageError("Conversations need a chat template, and the model has none.");
    return renderChat(t, e.messages);
  }
  const body = "text" in e ? e.text : e.prompt + e.completion;
  return `${special.bos ?? ""}${body}${special.eos ?? ""}`;
}
