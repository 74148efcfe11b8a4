import { builtinEntries } from "../store/builtin.js";
import { listModels } from "../store/registry.js";
import { resolveModel } from "../store/resolve.js";
import type { ModelEntry } from "../store/types.js";
import { readJsonBody } from "./body.js";
import type { RequestContext, Route } from "./router.js";
import { generateFor, now, sendJson } from "./generation.js";
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
