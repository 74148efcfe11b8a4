import { randomUUID } from "node:crypto";
import type { ServerResponse } from "node:http";
import type { GenerateResult } from "../llama/generate.js";
import type { ChatTurn, RuntimeModel } from "../runtime/types.js";
import { HttpError } from "./httpError.js";
import { type Echo, chatLogprobs, echoOf, legacyLogprobs, requireLogprobs } from "./logprobs.js";
import type { TokenLogprob } from "../runtime/tokenLogprobs.js";
import type { Lease } from "./pool.js";
import type { RequestContext } from "./router.js";
import { SseWriter } from "./sse.js";
import { ToolCallShaper, checkToolSupport } from "./tools.js";
import type { ChatRequest, CompletionRequest } from "./validate.js";

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json; charset=utf-8", "Content-Length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

export const now = () => Math.floor(Date.now() / 1000);

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/**
 * One prompt to answer: a conversation (chat) or the tokens of a raw prompt (completion), with its
 * length as the model will evaluate it (the count run and chat report too), known before generating so
 * that a prompt that does not fit is refused.
 */
interface Job {
  messages?: ChatTurn[];
  tokens?: number[];
  promptTokens: number;
}

/** The request's conversation (and its tools), rendered with the model's chat template. */
async function chatJob(model: RuntimeModel, r: ChatRequest): Promise<Job> {
  const turns: ChatTurn[] = r.messages.map((m) => ({ role: m.role, content: m.content, ...(m.toolCalls ? { toolCalls: m.toolCalls } : {}) }));
  return { messages: turns, promptTokens: (await model.chatPrompt(turns, r.tools?.tools)).length };
}

/**
 * A raw prompt's tokens, as llama.cpp's server makes them: BOS (when the model adds one), then the text
 * with its control tokens (`<|user|>`, `</s>`…) parsed as such, so a prompt written in the model's chat
 * format means what it says. Token ids are taken as given, but checked against the vocabulary (an id
 * outside it would reach the runtime's embedding lookup unchecked); only BOS is put in front when they do
 * not start with it, as the text's tokens would.
 */
function completionJob(model: RuntimeModel, prompt: string | number[], index: number, batch: boolean): Job {
  if (typeof prompt === "string") {
    const tokens = model.tokenize(prompt, { special: true, bos: true });
    return { tokens, promptTokens: tokens.length };
  }
  const limit = model.vocabSize > 0 ? model.vocabSize : Number.MAX_SAFE_INTEGER;
  prompt.forEach((t, i) => {
    if (!Number.isInteger(t) || t < 0 || t >= limit) {
      throw new HttpError(400, `${batch ? `prompt[${index}]` : "prompt"}: Token id ${t} at position ${i} is not in the model's vocabulary (0–${limit - 1}).`, { param: "prompt" });
    }
  });
  const bos = model.tokenize("", { special: true, bos: true });
  const tokens = bos.length > 0 && prompt[0] !== bos[0] ? [...bos, ...prompt] : [...prompt];
  return { tokens, promptTokens: tokens.length };
}

type Kind = "chat" | "completion";

/**
 * /v1/chat/completions and /v1/completions, streamed as SSE or answered as one object. A completion
 * request may hold several prompts (OpenAI's batch form): each gets its own sequence, as if it came
 * alone, and its own choice with its `index`; usage adds them up.
 */
export async function generateFor(res: ServerResponse, ctx: RequestContext, kind: Kind, r: ChatRequest | CompletionRequest): Promise<void> {
  const first = await ctx.pool.lease(r.model, ctx.signal);
  const failed = new Set<Lease>();
  // One failed prompt of a batch stops the others: the request is answered with its error.
  const batchCtl = new AbortController();
  const stopBatch = () => batchCtl.abort();
  let firstError: unknown;
  ctx.signal.addEventListener("abort", stopBatch, { once: true });
  try {
    const { model } = first;
    const prompts = kind === "completion" ? (r as CompletionRequest).prompts : [];
    const tools = kind === "chat" ? (r as ChatRequest).tools : undefined;
    if (kind === "chat") await checkToolSupport(model, first.id, tools, (r as ChatRequest).messages);
    const jobs = kind === "chat" ? [await chatJob(model, r as ChatRequest)] : prompts.map((p, i) => completionJob(model, p, i, prompts.length > 1));
    const contextSize = model.contextSize;
    jobs.forEach((job, i) => {
      if (job.promptTokens >= contextSize) {
        const which = kind === "chat" ? "The prompt" : prompts.length > 1 ? `prompt[${i}]` : "The prompt";
        throw new HttpError(400, `${which} is ${job.promptTokens} tokens, but ${first.id}'s context holds ${contextSize} per request (server flag --ctx).`, { param: kind === "chat" ? "messages" : "prompt", code: "context_length_exceeded" });
      }
    });

    const id = `${kind === "chat" ? "chatcmpl" : "cmpl"}-${randomUUID().replaceAll("-", "")}`;
    const created = now();
    const head = { id, object: kind === "chat" ? "chat.completion.chunk" : "text_completion", created, model: r.model };
    const sse = r.stream ? new SseWriter(res) : undefined;
    const started = new Set<number>();
    const toolCalls = new ToolCallShaper();
    // Where each completion choice's streamed text has got to (text_offset of the next chunk's tokens).
    const streamed = new Map<number, number>();
    const piece = (index: number, text: string | undefined, finish: string | null, tokens?: Echo["tokens"] | TokenLogprob[]) => {
      if (kind === "completion") {
        const at = streamed.get(index) ?? 0;
        streamed.set(index, at + (text ?? "").length);
        return { ...head, choices: [{ index, text: text ?? "", logprobs: tokens && r.logprobs ? legacyLogprobs(tokens, at) : null, finish_reason: finish }] };
      }
      const delta = text === undefined ? {} : started.has(index) ? { content: text } : { role: "assistant", content: text };
      started.add(index);
      return { ...head, choices: [{ index, delta, logprobs: tokens && r.logprobs ? chatLogprobs(tokens as TokenLogprob[]) : null, finish_reason: finish }] };
    };
    const echoes: (Echo | undefined)[] = [];
    const toolPiece = (index: number, call: Record<string, unknown>) => {
      const delta = { ...(started.has(index) ? {} : { role: "assistant", content: null }), tool_calls: [call] };
      started.add(index);
      return { ...head, choices: [{ index, delta, logprobs: null, finish_reason: null }] };
    };

    const answer = async (job: Job, index: number): Promise<GenerateResult> => {
      let lease: Lease | undefined;
      try {
        lease = index === 0 ? first : await ctx.pool.lease(r.model, batchCtl.signal);
        failed.add(lease);
        if (r.logprobs) {
          requireLogprobs(lease.slot, first.id);
          // The first request with logprobs builds (once per machine) and probes (once per model) the fast reader.
          await ctx.pool.prepareLogprobs(lease.model);
        }
        const echo = kind === "completion" && (r as CompletionRequest).echo ? await echoOf(model, lease.slot, prompts[index]!, job.tokens!, r.logprobs?.top, batchCtl.signal) : undefined;
        echoes[index] = echo;
        if (sse && echo) sse.send(piece(index, echo.text, null, echo.tokens ?? []));
        const result = r.maxTokens === 0 ? nothingGenerated(job) : await lease.slot.generate({
          messages: job.messages,
          tokens: job.tokens,
          temperature: r.temperature,
          topP: r.topP,
          topK: r.topK,
          minP: r.minP,
          repeatPenalty: r.repeatPenalty,
          seed: r.seed,
          stop: r.stop,
          jsonSchema: r.jsonSchema,
          logprobs: r.logprobs,
          tools,
          onToolCall: sse ? (c) => sse.send(toolPiece(index, toolCalls.delta(c))) : undefined,
          // Never past the context: OpenAI's "length" then, rather than the runtime shifting the context.
          maxTokens: Math.min(r.maxTokens ?? contextSize - job.promptTokens, contextSize - job.promptTokens),
          signal: batchCtl.signal,
          // node-llama-cpp may flush an empty chunk when it releases text held back for stop-trigger matching.
          onText: sse ? (t, tokens) => (t !== "" || (kind === "completion" && tokens?.length)) && sse.send(piece(index, t, null, tokens)) : undefined,
        });
        failed.delete(lease);
        if (result.stopReason === "abort") return result;
        ctx.metrics?.generated(lease.id, result);
        if (sse) {
          if (kind === "chat" && !started.has(index)) sse.send(piece(index, "", null));
          sse.send(piece(index, undefined, finishOf(result)));
        }
        return result;
      } catch (err) {
        // The first failure is the cause; the others are the batch being stopped because of it.
        firstError ??= err;
        stopBatch();
        throw err;
      } finally {
        // Back as soon as this prompt is done: with --parallel 1 the next prompt of the batch waits for it.
        // After a failure mid-generation the sequence's state is unknown: wipe it before anyone reuses it.
        if (lease) await lease.release(failed.has(lease));
      }
    };
    // Settled, not Promise.all: every prompt's sequence is back before the request is answered.
    const settled = await Promise.allSettled(jobs.map(answer));
    if (settled.some((x) => x.status === "rejected")) throw firstError;
    const results = settled.map((x) => (x as PromiseFulfilledResult<GenerateResult>).value);

    if (results.some((x) => x.stopReason === "abort")) {
      if (ctx.clientGone()) {
        ctx.stats.aborted++;
        return;
      }
      throw new HttpError(503, "The server is shutting down.", { code: "cancelled" });
    }
    const promptTokens = jobs.reduce((n, j) => n + j.promptTokens, 0);
    const completionTokens = results.reduce((n, x) => n + x.completionTokens, 0);
    const usage: Usage = { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
    if (sse) {
      if (r.includeUsage) sse.send({ ...head, choices: [], usage });
      sse.done();
      return;
    }
    const choices = results.map((x, index) => {
      if (kind === "chat") {
        const message = { role: "assistant", content: x.toolCalls && x.text === "" ? null : x.text, refusal: null, ...(x.toolCalls ? { tool_calls: toolCalls.message(x.toolCalls) } : {}) };
        return { index, message, logprobs: r.logprobs ? chatLogprobs(x.tokens ?? []) : null, finish_reason: finishOf(x) };
      }
      const echo = echoes[index];
      return { index, text: (echo?.text ?? "") + x.text, logprobs: r.logprobs ? legacyLogprobs([...(echo?.tokens ?? []), ...(x.tokens ?? [])], 0) : null, finish_reason: finishOf(x) };
    });
    sendJson(res, 200, { id, object: kind === "chat" ? "chat.completion" : "text_completion", created, model: r.model, choices, usage });
  } finally {
    ctx.signal.removeEventListener("abort", stopBatch);
    // Released already unless the request failed before generating (release is idempotent).
    await first.release(failed.has(first));
  }
}

/** max_tokens 0 (echo only): the prompt is all there is. */
function nothingGenerated(job: Job): GenerateResult {
  return { text: "", stopReason: "maxTokens", promptTokens: job.promptTokens, completionTokens: 0, timings: { loadMs: 0, firstTokenMs: 0, totalMs: 0, tokensPerSecond: 0 }, tokens: [] };
}

function finishOf(r: GenerateResult): "length" | "stop" | "tool_calls" {
  return r.toolCalls ? "tool_calls" : r.stopReason === "maxTokens" ? "length" : "stop";
}
