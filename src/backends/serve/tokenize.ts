import type { RuntimeModel } from "../runtime/types.js";
import { readJsonBody } from "./body.js";
import { sendJson } from "./generation.js";
import { HttpError } from "./httpError.js";
import type { RequestContext, Route } from "./router.js";
import type { Body } from "./validate.js";

/**
 * Tokenizer routes: llama-server's `/tokenize` and `/detokenize` (`content`, `add_special`,
 * `with_pieces`), which also answer vLLM's field names (`prompt`, `add_special_tokens`), and vLLM's
 * `/tokenizer_info`: what lm-evaluation-harness's remote tokenizer uses, so that it needs no Hugging Face
 * tokenizer files. The model is the request's `model`, or the first one the server was started with.
 */

function bad(param: string, message: string): HttpError {
  return new HttpError(400, message, { param });
}

function optionalBool(b: Body, names: string[], fallback: boolean): boolean {
  for (const name of names) {
    const v = b[name];
    if (v === undefined || v === null) continue;
    if (typeof v !== "boolean") throw bad(name, `${name} must be true or false.`);
    return v;
  }
  return fallback;
}

async function onModel<T>(ctx: RequestContext, b: Body, use: (model: RuntimeModel) => T): Promise<T> {
  const ref = b.model ?? ctx.pool.names()[0];
  if (typeof ref !== "string" || ref.trim() === "") throw bad("model", "model must be the name of a model this server serves (GET /v1/models).");
  return ctx.pool.withModel(ref.trim(), (model) => use(model));
}

async function bodyOf(ctx: RequestContext, req: Parameters<Route["handler"]>[0]): Promise<Body> {
  return readJsonBody(req, ctx.maxBodyBytes);
}

/** Control tokens written in the text (`<|user|>`) are those tokens; `add_special` puts BOS in front, as the model's prompts have it. */
const tokenize: Route["handler"] = async (req, res, ctx) => {
  const b = await bodyOf(ctx, req);
  const text = b.content ?? b.prompt;
  if (typeof text !== "string") throw bad("content", "content must be a string (the text to tokenize).");
  const bos = optionalBool(b, ["add_special", "add_special_tokens"], false);
  const special = optionalBool(b, ["parse_special"], true);
  const pieces = optionalBool(b, ["with_pieces"], false);
  const out = await onModel(ctx, b, (model) => {
    const tokens = model.tokenize(text, { special, bos });
    // As llama-server: a piece that is not whole UTF-8 characters (a byte token) is given as its bytes.
    const piece = (id: number) => {
      const text = model.detokenize([id], { special: true });
      return text.includes("\uFFFD") && model.tokenBytes ? model.tokenBytes(id) : text;
    };
    return pieces ? tokens.map((id) => ({ id, piece: piece(id) })) : tokens;
  });
  sendJson(res, 200, { tokens: out });
};

/** Control tokens are written out, so that tokenize(detokenize(x)) is x. */
const detokenize: Route["handler"] = async (req, res, ctx) => {
  const b = await bodyOf(ctx, req);
  const tokens = b.tokens;
  if (!Array.isArray(tokens) || !tokens.every((t): t is number => typeof t === "number" && Number.isInteger(t) && t >= 0)) throw bad("tokens", "tokens must be an array of token ids.");
  const content = await onModel(ctx, b, (model) => {
    const bad = tokens.find((t) => model.vocabSize > 0 && t >= model.vocabSize);
    if (bad !== undefined) throw new HttpError(400, `Token id ${bad} is not in the model's vocabulary (0–${model.vocabSize - 1}).`, { param: "tokens" });
    return model.detokenize(tokens, { special: true });
  });
  // `content` is llama-server's name, `prompt` vLLM's.
  sendJson(res, 200, { content, prompt: content });
};

/** vLLM's shape; lm-evaluation-harness probes it (`eos_token` must be there) before it uses /tokenize. */
const tokenizerInfo: Route["handler"] = async (req, res, ctx) => {
  // "+" kept as written: `?model=tiny-arith+sub` names the fine-tune (curl sends it as is), where form
  // decoding would read "tiny-arith sub"; a space is %20.
  const query = new URL(req.url ?? "/", "http://x").search.replace(/\+/g, "%2B");
  const model = new URLSearchParams(query).get("model") ?? undefined;
  const info = await onModel(ctx, { model }, (m) => {
    const t = m.tokenizerInfo?.() ?? { bos: null, eos: null, chatTemplate: null };
    const piece = (id: number | null) => (id === null ? null : m.detokenize([id], { special: true }));
    return { bos_token: piece(t.bos), eos_token: piece(t.eos), pad_token: null, chat_template: t.chatTemplate, model_max_length: m.contextSize };
  });
  sendJson(res, 200, info);
};

export const TOKENIZER_ROUTES: readonly Route[] = [
  { method: "POST", path: "/tokenize", auth: true, handler: tokenize },
  { method: "POST", path: "/detokenize", auth: true, handler: detokenize },
  { method: "GET", path: "/tokenizer_info", auth: true, handler: tokenizerInfo },
];
