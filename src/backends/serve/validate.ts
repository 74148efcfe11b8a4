import type { SamplingOptions } from "../llama/generate.js";
import type { ToolOptions, TurnToolCall } from "../runtime/types.js";
import { HttpError } from "./httpError.js";
import { type ToolResult, foldToolResults, toolCallsOf, toolResultOf, toolsOf } from "./tools.js";

/**
 * Request validation for the OpenAI endpoints: every field this server uses is type- and range-checked,
 * so that bad input becomes a 400 naming the field instead of reaching node-llama-cpp. `null` counts as
 * absent (clients often send `"stop": null`). Unknown fields are ignored, as OpenAI does.
 */

export type Body = Record<string, unknown>;

export interface SamplingRequest extends SamplingOptions {
  /** A JSON schema the output must follow: from response_format json_schema, or any object for json_object. */
  jsonSchema?: object;
  /** Each answer token's log-probability and this many alternatives (chat `logprobs`+`top_logprobs`, completions `logprobs: N`). */
  logprobs?: { top: number };
}

export type ChatRole = "system" | "user" | "assistant";

export interface ChatMessage {
  role: ChatRole;
  content: string;
  /** An assistant message's tool calls, with the `role: "tool"` answers folded in (tools.ts). */
  toolCalls?: TurnToolCall[];
}

export interface ChatRequest extends SamplingRequest {
  model: string;
  messages: ChatMessage[];
  stream: boolean;
  includeUsage: boolean;
  /** The functions the model may call; absent without tools or with tool_choice "none". */
  tools?: ToolOptions;
}

export interface CompletionRequest extends SamplingRequest {
  model: string;
  /** One or more prompts (OpenAI's batch form), each text or token ids; one choice each. */
  prompts: (string | number[])[];
  /** The prompt comes back before the answer, and with `logprobs` its tokens' log-probabilities (the first: null). */
  echo: boolean;
  stream: boolean;
  includeUsage: boolean;
}

export interface EmbeddingRequest {
  model: string;
  input: string[];
  encoding: "float" | "base64";
}

function bad(param: string, message: string): HttpError {
  return new HttpError(400, message, { param });
}

function present(b: Body, name: string): boolean {
  return b[name] !== undefined && b[name] !== null;
}

function num(b: Body, name: string, min: number, max: number): number | undefined {
  if (!present(b, name)) return undefined;
  const v = b[name];
  if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max) throw bad(name, `${name} must be a number from ${min} to ${max}.`);
  return v;
}

function int(b: Body, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (!present(b, name)) return undefined;
  const v = b[name];
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) throw bad(name, `${name} must be a whole number ≥ ${min}${max < Number.MAX_SAFE_INTEGER ? ` and ≤ ${max}` : ""}.`);
  return v;
}

function bool(b: Body, name: string): boolean {
  if (!present(b, name)) return false;
  if (typeof b[name] !== "boolean") throw bad(name, `${name} must be true or false.`);
  return b[name];
}

function modelOf(b: Body): string {
  const m = b.model;
  if (typeof m !== "string" || m.trim() === "") throw bad("model", "model is required: one of the models this server serves (GET /v1/models).");
  return m.trim();
}

/** Fields this server does not implement are refused when they would change the answer, never ignored. */
function refuseUnsupported(b: Body): void {
  const n = int(b, "n", 1);
  if (n !== undefined && n !== 1) throw bad("n", "Only n = 1 is supported.");
  const bestOf = int(b, "best_of", 1);
  if (bestOf !== undefined && bestOf !== 1) throw bad("best_of", "Only best_of = 1 is supported.");
  for (const name of ["frequency_penalty", "presence_penalty"]) {
    const v = num(b, name, -2, 2);
    if (v !== undefined && v !== 0) throw bad(name, `${name} is not supported; use repeat_penalty.`);
  }
  if (present(b, "logit_bias") && (typeof b.logit_bias !== "object" || Object.keys(b.logit_bias as object).length > 0)) throw bad("logit_bias", "logit_bias is not supported.");
  if (Array.isArray(b.functions) && b.functions.length > 0) throw bad("functions", "The legacy functions field is not supported: send tools.");
  if (present(b, "suffix")) throw bad("suffix", "suffix (infill) is not supported.");
}

function stopOf(b: Body): string[] | undefined {
  if (!present(b, "stop")) return undefined;
  const s = b.stop;
  const list = typeof s === "string" ? [s] : Array.isArray(s) ? s : undefined;
  if (!list || list.length > 16 || !list.every((x): x is string => typeof x === "string" && x.length > 0)) {
    throw bad("stop", "stop must be a non-empty string or an array of up to 16 non-empty strings.");
  }
  return list.length > 0 ? list : undefined;
}

function responseFormatOf(b: Body): object | undefined {
  if (!present(b, "response_format")) return undefined;
  const rf = b.response_format;
  if (typeof rf !== "object" || rf === null || Array.isArray(rf)) throw bad("response_format", "response_format must be an object.");
  const { type } = rf as Body;
  if (type === "text") return undefined;
  // Any JSON object: node-llama-cpp's schema grammar allows any keys and values with additionalProperties.
  if (type === "json_object") return { type: "object", additionalProperties: true };
  if (type === "json_schema") {
    const js = (rf as Body).json_schema;
    const schema = typeof js === "object" && js !== null ? (js as Body).schema : undefined;
    if (typeof schema !== "object" || schema === null || Array.isArray(schema)) throw bad("response_format", "response_format.json_schema.schema must be a JSON schema object.");
    return schema;
  }
  throw bad("response_format", 'response_format.type must be "text", "json_object" or "json_schema".');
}

/** Most alternatives per token, as OpenAI's top_logprobs. */
export const MAX_TOP_LOGPROBS = 20;

/** `minTokens` 0: a completion that echoes its prompt may generate nothing. */
function samplingOf(b: Body, minTokens = 1): SamplingRequest {
  refuseUnsupported(b);
  const maxTokens = int(b, "max_completion_tokens", minTokens) ?? int(b, "max_tokens", minTokens);
  const seed = int(b, "seed", Number.MIN_SAFE_INTEGER);
  return {
    temperature: num(b, "temperature", 0, 2),
    topP: num(b, "top_p", 0, 1),
    // Not OpenAI's, but llama.cpp's server takes them too.
    topK: int(b, "top_k", 0),
    minP: num(b, "min_p", 0, 1),
    repeatPenalty: num(b, "repeat_penalty", 0, 5),
    // llama.cpp's seed is 32-bit and unsigned; OpenAI's is any integer.
    seed: seed === undefined ? undefined : Number(BigInt.asUintN(32, BigInt(seed))),
    maxTokens,
    stop: stopOf(b),
    jsonSchema: responseFormatOf(b),
  };
}

function streamOf(b: Body): { stream: boolean; includeUsage: boolean } {
  const stream = bool(b, "stream");
  let includeUsage = false;
  if (present(b, "stream_options")) {
    const so = b.stream_options;
    if (typeof so !== "object" || so === null || Array.isArray(so)) throw bad("stream_options", "stream_options must be an object.");
    includeUsage = bool(so as Body, "include_usage");
  }
  return { stream, includeUsage };
}

/** Message content: a string, or the array form with text parts only (images and audio are refused). */
function contentOf(v: unknown, i: number, role: string): string {
  const param = `messages[${i}].content`;
  if (typeof v === "string") return v;
  if (v === null && role === "assistant") return "";
  if (Array.isArray(v)) {
    return v
      .map((part: unknown) => {
        if (typeof part === "object" && part !== null && (part as Body).type === "text" && typeof (part as Body).text === "string") return (part as Body).text as string;
        throw bad(param, `${param} may only hold text parts ({"type":"text","text":…}).`);
      })
      .join("");
  }
  throw bad(param, `${param} must be a string or an array of text parts.`);
}

export function parseChatRequest(b: Body): ChatRequest {
  const model = modelOf(b);
  if (!Array.isArray(b.messages) || b.messages.length === 0) throw bad("messages", "messages must be a non-empty array of {role, content}.");
  if (bool(b, "echo")) throw bad("echo", "echo is a /v1/completions field: chat completions do not return the prompt. Send the rendered prompt to /v1/completions with echo: true.");
  const parsed = b.messages.map((m: unknown, i): ChatMessage | ToolResult => {
    if (typeof m !== "object" || m === null || Array.isArray(m)) throw bad(`messages[${i}]`, `messages[${i}] must be an object with role and content.`);
    const role = (m as Body).role;
    // "developer" is the newer OpenAI name for system instructions.
    if (role === "tool") return toolResultOf(m as Body, contentOf((m as Body).content, i, role), i);
    const mapped: ChatRole | undefined = role === "system" || role === "developer" ? "system" : role === "user" || role === "assistant" ? role : undefined;
    if (!mapped) throw bad(`messages[${i}].role`, `messages[${i}].role must be system, developer, user, assistant or tool${role === "function" ? " (the legacy function role is not supported)" : ""}.`);
    const toolCalls = mapped === "assistant" ? toolCallsOf((m as Body).tool_calls, i) : undefined;
    return { role: mapped, content: contentOf((m as Body).content, i, mapped), ...(toolCalls ? { toolCalls } : {}) };
  });
  const messages = foldToolResults<ChatMessage>(parsed);
  const last = messages[messages.length - 1]!;
  if (last.role !== "user" && !(last.toolCalls && last.toolCalls.length > 0)) throw bad("messages", "The last message must be from the user, or the tool results of the assistant's calls.");
  const tools = toolsOf(b);
  const sampling = samplingOf(b);
  if (tools && sampling.jsonSchema) throw bad("response_format", "response_format cannot be used with tools.");
  const top = int(b, "top_logprobs", 0, MAX_TOP_LOGPROBS);
  const logprobs = bool(b, "logprobs");
  if (top !== undefined && !logprobs) throw bad("top_logprobs", "top_logprobs needs logprobs: true.");
  // Tool calls are generated through node-llama-cpp's function calling, which the logprobs tap does not follow.
  if (tools && logprobs) throw bad("logprobs", "logprobs cannot be combined with tools yet: send one or the other.");
  return { model, messages, ...streamOf(b), ...sampling, ...(tools ? { tools } : {}), ...(logprobs && { logprobs: { top: top ?? 0 } }) };
}

/** Most prompts in one completion request, as for embedding inputs. */
export const MAX_BATCH = 2048;

const isTokenIds = (v: unknown): v is number[] => Array.isArray(v) && v.length > 0 && v.every((t) => typeof t === "number" && Number.isInteger(t));

/**
 * `prompt` in each form OpenAI takes: a string, an array of token ids, an array of strings, or an array
 * of token-id arrays (the last two are a batch). Whether token ids fit the vocabulary is checked once
 * the model is known.
 */
function promptsOf(b: Body): (string | number[])[] {
  const p = b.prompt;
  const forms = "prompt must be a non-empty string, an array of token ids, or an array of either (a batch).";
  if (typeof p === "string") {
    if (p === "") throw bad("prompt", forms);
    return [p];
  }
  if (!Array.isArray(p) || p.length === 0) throw bad("prompt", forms);
  if (isTokenIds(p)) return [p];
  if (p.length > MAX_BATCH) throw bad("prompt", `A batch holds at most ${MAX_BATCH} prompts (got ${p.length}).`);
  return p.map((x: unknown, i) => {
    if ((typeof x === "string" && x !== "") || isTokenIds(x)) return x;
    throw bad("prompt", `prompt[${i}] must be a non-empty string or a non-empty array of whole-number token ids.`);
  });
}

export function parseCompletionRequest(b: Body): CompletionRequest {
  const model = modelOf(b);
  // The legacy API's logprobs is the number of alternatives; false/true are chat's and mean nothing here.
  if (present(b, "logprobs") && typeof b.logprobs !== "number") throw bad("logprobs", `logprobs must be a whole number from 0 to ${MAX_TOP_LOGPROBS} (the alternatives per token) on /v1/completions.`);
  const top = int(b, "logprobs", 0, MAX_TOP_LOGPROBS);
  const echo = bool(b, "echo");
  return { model, prompts: promptsOf(b), echo, ...streamOf(b), ...samplingOf(b, echo ? 0 : 1), ...(top !== undefined && { logprobs: { top } }) };
}

export function parseEmbeddingRequest(b: Body): EmbeddingRequest {
  const model = modelOf(b);
  const raw = b.input;
  const input = typeof raw === "string" ? [raw] : Array.isArray(raw) ? raw : undefined;
  if (!input || input.length === 0 || input.length > 2048 || !input.every((x): x is string => typeof x === "string" && x !== "")) {
    throw bad("input", "input must be a non-empty string or an array of up to 2048 non-empty strings.");
  }
  const enc = b.encoding_format ?? "float";
  if (enc !== "float" && enc !== "base64") throw bad("encoding_format", 'encoding_format must be "float" or "base64".');
  if (present(b, "dimensions")) throw bad("dimensions", "dimensions is not supported: the model's embedding size is fixed.");
  return { model, input, encoding: enc };
}
