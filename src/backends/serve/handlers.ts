import { builtinEntries } from "../store/builtin.js";
import { listModels } from "../store/registry.js";
import { readJsonBody } from "./body.js";
import type { RequestContext, Route } from "./router.js";
import { generateFor, now, sendJson } from "./generation.js";
import { TOKENIZER_ROUTES } from "./tokenize.js";
import { parseChatRequest, parseCompletionRequest, parseEmbeddingRequest } from "./validate.js";

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

/** Every model a client may name (started, built-in, registered), plus those loaded by path (--allow-paths). */
const models: Route["handler"] = async (_req, res, ctx) => {
  const created = new Map([...builtinEntries(), ...listModels()].map((e) => [e.name, e.createdAt]));
  const ids = new Set([...ctx.pool.names(), ...ctx.pool.status().map((s) => s.id)]);
  sendJson(res, 200, { object: "list", data: [...ids].map((id) => modelObject(id, created.get(id))) });
};

const model: Route["handler"] = async (_req, res, ctx) => {
  const { id, entry } = ctx.pool.resolve(ctx.params[0] ?? "");
  sendJson(res, 200, modelObject(id, entry.createdAt));
};

/** Open to all (load balancers probe it); the loaded models and counters only with the key, if one is set. */
const health: Route["handler"] = async (_req, res, ctx) => {
  sendJson(res, 200, ctx.authorized ? { status: "ok", models: ctx.pool.status(), requests: ctx.stats } : { status: "ok" });
};

const metrics: Route["handler"] = async (_req, res, ctx) => {
  const text = ctx.metrics?.render(ctx.pool.status()) ?? "";
  res.writeHead(200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8", "Content-Length": Buffer.byteLength(text) });
  res.end(text);
};

/** Added to ROUTES by --metrics. */
export const METRICS_ROUTE: Route = { method: "GET", path: "/metrics", auth: true, handler: metrics };

export const ROUTES: readonly Route[] = [
  { method: "GET", path: "/health", auth: false, handler: health },
  { method: "GET", path: "/v1/models", auth: true, handler: models },
  { method: "GET", path: /^\/v1\/models\/(.+)$/, name: "/v1/models/{model}", auth: true, handler: model },
  { method: "POST", path: "/v1/chat/completions", auth: true, handler: chatCompletions },
  { method: "POST", path: "/v1/completions", auth: true, handler: completions },
  { method: "POST", path: "/v1/embeddings", auth: true, handler: embeddings },
  ...TOKENIZER_ROUTES,
];
