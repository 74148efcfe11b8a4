import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { ChatHistoryItem } from "node-llama-cpp";
import { generateOn } from "../llama/generate.js";
import type { LoadedModel } from "../llama/loader.js";
import { builtinEntries } from "../store/builtin.js";
import { listModels } from "../store/registry.js";
import { resolveModel } from "../store/resolve.js";
import type { ModelEntry } from "../store/types.js";
import { readJsonBody } from "./body.js";
import { HttpError } from "./httpError.js";
import type { RequestContext, Route } from "./router.js";
import { SseWriter } from "./sse.js";
import { type ChatMessage, type ChatRequest, type CompletionRequest, parseChatRequest, parseCompletionRequest, parseEmbeddingRequest } from "./validate.js";

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json; charset=utf-8", "Content-Length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

const now = () => Math.floor(Date.now() / 1000);

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** The prompt as node-llama-cpp will see it, and its exact token count (OpenAI's usage.prompt_tokens). */
interface PreparedPrompt {
  prompt: string;
  history?: ChatHistoryItem[];
  promptTokens: number;
}

/**
 * The request's messages become the chat history before the last user message, which is the prompt.
 * Counting tokens through the same chat wrapper gives the templated prompt's real length: the sequence's
 * token meter cannot, since a reused sequence only evaluates the part that differs from its last request.
 */
async function prepareChat(loaded: LoadedModel, messages: ChatMessage[]): Promise<PreparedPrompt> {
  const wrapper = await loaded.chatWrapper();
  const history: ChatHistoryItem[] = messages.slice(0, -1).map((m) => (m.role === "assistant" ? { type: "model", response: [m.content] } : { type: m.role, text: m.content }));
  const prompt = messages[messages.length - 1]!.content;
  const { contextText } = wrapper.generateContextState({ chatHistory: [...history, { type: "user", text: prompt }, { type: "model", response: [] }] });
  return { prompt, history, promptTokens: contextText.tokenize(loaded.model.tokenizer).length };
}

/** LlamaCompletion prepends BOS when the tokenizer wants one, and then trims the prompt's leading space. */
function prepareRaw(loaded: LoadedModel, prompt: string): PreparedPrompt {
  const { tokens } = loaded.model;
  const bos = tokens.shouldPrependBosToken && tokens.bos !== null;
  return { prompt, promptTokens: loaded.model.tokenize(prompt, false, bos ? "trimLeadingSpace" : undefined).length + (bos ? 1 : 0) };
}

type Kind = "chat" | "completion";

/** One generation for /v1/chat/completions or /v1/completions, streamed as SSE or answered as one object. */
async function generateFor(res: ServerResponse, ctx: RequestContext, kind: Kind, r: ChatRequest | CompletionRequest): Promise<void> {
  const lease = await ctx.pool.lease(r.model, ctx.signal);
  let failed = false;
  try {
    const { loaded } = lease;
    const p = kind === "chat" ? await prepareChat(loaded, (r as ChatRequest).messages) : prepareRaw(loaded, (r as CompletionRequest).prompt);
    const contextSize = loaded.context.contextSize;
    const room = contextSize - p.promptTokens;
    if (room <= 0) {
      throw new HttpError(400, `The prompt is ${p.promptTokens} tokens, but ${lease.id}'s context holds ${contextSize} per request (server flag --ctx).`, { param: kind === "chat" ? "messages" : "prompt", code: "context_length_exceeded" });
    }
    const id = `${kind === "chat" ? "chatcmpl" : "cmpl"}-${randomUUID().replaceAll("-", "")}`;
    const created = now();
    const head = { id, object: kind === "chat" ? "chat.completion.chunk" : "text_completion", created, model: r.model };
    const sse = r.stream ? new SseWriter(res) : undefined;
    const piece = (text: string | undefined, finish: string | null) =>
      kind === "chat"
        ? { ...head, choices: [{ index: 0, delta: text === undefined ? {} : sse?.hasStarted ? { content: text } : { role: "assistant", content: text }, logprobs: null, finish_reason: finish }] }
        : { ...head, choices: [{ index: 0, text: text ?? "", logprobs: null, finish_reason: finish }] };

    failed = true;
    const result = await generateOn(loaded, lease.sequence, {
      prompt: p.prompt,
      history: p.history,
      raw: kind === "completion",
      temperature: r.temperature,
      topP: r.topP,
      topK: r.topK,
      minP: r.minP,
      repeatPenalty: r.repeatPenalty,
      seed: r.seed,
      stop: r.stop,
      jsonSchema: r.jsonSchema,
      // Never past the context: OpenAI's "length" then, rather than node-llama-cpp shifting the context.
      maxTokens: Math.min(r.maxTokens ?? room, room),
      signal: ctx.signal,
      // node-llama-cpp may flush an empty chunk when it releases text held back for stop-trigger matching.
      onText: sse ? (t) => t !== "" && sse.send(piece(t, null)) : undefined,
    });
    failed = false;

    if (result.stopReason === "abort") {
      if (ctx.clientGone()) {
        ctx.stats.aborted++;
        return;
      }
      throw new HttpError(503, "The server is shutting down.", { code: "cancelled" });
    }
    const finish = result.stopReason === "maxTokens" ? "length" : "stop";
    const usage: Usage = { prompt_tokens: p.promptTokens, completion_tokens: result.completionTokens, total_tokens: p.promptTokens + result.completionTokens };
    if (sse) {
      if (!sse.hasStarted) sse.send(piece("", null));
      sse.send(piece(undefined, finish));
      if (r.includeUsage) sse.send({ ...head, choices: [], usage });
      sse.done();
      return;
    }
    const choice =
      kind === "chat" ? { index: 0, message: { role: "assistant", content: result.text, refusal: null }, logprobs: null, finish_reason: finish } : { index: 0, text: result.text, logprobs: null, finish_reason: finish };
    sendJson(res, 200, { id, object: kind === "chat" ? "chat.completion" : "text_completion", created, model: r.model, choices: [choice], usage });
  } finally {
    // After a failure mid-generation the sequence's state is unknown: wipe it before anyone reuses it.
    await lease.release(failed);
  }
}

const chatCompletions: Route["handler"] = async (req, res, ctx) => generateFor(res, ctx, "chat", parseChatRequest(await readJsonBody(req, ctx.maxBodyBytes)));

const completions: Route["handler"] = async (req, res, ctx) => generateFor(res, ctx, "completion", parseCompletionRequest(await readJsonBody(req, ctx.maxBodyBytes)));

const embeddings: Route["handler"] = async (req, res, ctx) => {
  const r = parseEmbeddingRequest(await readJsonBody(req, ctx.maxBodyBytes));
  const { vectors, tokens } = await ctx.pool.embed(r.model, r.input, ctx.signal);
  // base64 is what the official clients ask for by default: little-endian float32s.
  const encode = (v: number[]) => (r.encoding === "base64" ? Buffer.from(new Float32Array(v).buffer).toString("base64") : v);
  sendJson(res, 200, { object: "list", data: vectors.map((v, index) => ({ object: "embedding", index, embedding: encode(v) })), model: r.model, usage: { prompt_tokens: tokens, total_tokens: tokens } });
};

function modelObject(id: string, createdAt?: string) {
  const t = createdAt ? Math.floor(Date.parse(createdAt) / 1000) : NaN;
  return { id, object: "model", created: Number.isFinite(t) ? t : now(), owned_by: "slm" };
}

/** Every GGUF model slm can run by name (built-in and registered), plus anything loaded by path. */
const models: Route["handler"] = async (_req, res, ctx) => {
  const known: ModelEntry[] = [...builtinEntries(), ...listModels()].filter((e) => e.format === "gguf");
  const data = known.map((e) => modelObject(e.name, e.createdAt));
  const ids = new Set(data.map((d) => d.id));
  for (const s of ctx.pool.status()) if (!ids.has(s.id)) data.push(modelObject(s.id));
  sendJson(res, 200, { object: "list", data });
};

const model: Route["handler"] = async (_req, res, ctx) => {
  const entry = resolveModel(ctx.params[0] ?? "");
  sendJson(res, 200, modelObject(ctx.params[0] ?? entry.name, entry.createdAt));
};

/** Open to all (load balancers probe it); the loaded models and counters only with the key, if one is set. */
const health: Route["handler"] = async (_req, res, ctx) => {
  sendJson(res, 200, ctx.authorized ? { status: "ok", models: ctx.pool.status(), requests: ctx.stats } : { status: "ok" });
};

export const ROUTES: readonly Route[] = [
  { method: "GET", path: "/health", auth: false, handler: health },
  { method: "GET", path: "/v1/models", auth: true, handler: models },
  { method: "GET", path: /^\/v1\/models\/(.+)$/, auth: true, handler: model },
  { method: "POST", path: "/v1/chat/completions", auth: true, handler: chatCompletions },
  { method: "POST", path: "/v1/completions", auth: true, handler: completions },
  { method: "POST", path: "/v1/embeddings", auth: true, handler: embeddings },
];
