import type { IncomingMessage, ServerResponse } from "node:http";
import { UsageError } from "../../core/errors.js";

/**
 * Cross-origin access for browser clients (`--cors ORIGIN`): the origins whose pages may call the API,
 * or "*" for any. Without it the server sends no CORS headers, and browsers keep other sites' pages from
 * reading its answers.
 */
export type CorsOrigins = "*" | ReadonlySet<string>;

/**
 * What a preflight allows: the methods the routes take, and the headers the page asks for. The headers
 * are echoed, not listed: the official `openai` client sends its own `X-Stainless-*` headers (OS, runtime,
 * retry count…) and a fixed list would make browsers refuse its every request; "*" would not cover
 * Authorization. Without a request list, the two headers every OpenAI client sends.
 */
const METHODS = "GET, POST, OPTIONS";
const HEADERS = "Authorization, Content-Type";
/** How long a browser may cache a preflight's answer (seconds). */
const MAX_AGE = "600";

/** `--cors` values (each may hold several, comma-separated) → the allowed origins. */
export function parseCorsOrigins(values: readonly string[]): CorsOrigins {
  const origins = values.flatMap((v) => v.split(",")).map((s) => s.trim()).filter(Boolean);
  if (origins.includes("*")) return "*";
  const set = new Set<string>();
  for (const o of origins) {
    let u: URL;
    try {
      u = new URL(o);
    } catch {
      throw new UsageError(`--cors ${o}: not an origin.`, { hint: "Give a scheme, host and optional port, e.g. --cors http://localhost:5173, or * for any origin." });
    }
    // An origin is scheme://host[:port] as browsers write it (lower case, no default port, no path).
    if (u.origin === "null") throw new UsageError(`--cors ${o}: not an origin.`, { hint: "Give a scheme, host and optional port, e.g. --cors http://localhost:5173." });
    if (o.replace(/\/$/, "") !== u.origin) {
      throw new UsageError(`--cors ${o}: not an origin as browsers send it (scheme://host[:port], no path).`, { hint: `Did you mean --cors ${u.origin}?` });
    }
    set.add(u.origin);
  }
  return set;
}

/**
 * Puts the CORS headers for `req`'s origin on `res` (before anything is written, so JSON, event streams
 * and errors all carry them). Returns true when the request was a preflight and has been answered.
 */
export function applyCors(allowed: CorsOrigins, req: IncomingMessage, res: ServerResponse): boolean {
  const origin = req.headers.origin;
  const ok = origin !== undefined && (allowed === "*" || allowed.has(origin));
  // The answer depends on the Origin header when origins are listed: caches must keep them apart.
  if (allowed !== "*") res.setHeader("Vary", "Origin");
  if (ok) res.setHeader("Access-Control-Allow-Origin", allowed === "*" ? "*" : origin);
  const preflight = req.method === "OPTIONS" && req.headers["access-control-request-method"] !== undefined;
  if (!preflight) return false;
  req.resume();
  // A preflight from an origin not allowed gets no CORS headers: the browser then refuses the request.
  if (ok) {
    res.setHeader("Access-Control-Allow-Methods", METHODS);
    const asked = req.headers["access-control-request-headers"];
    res.setHeader("Access-Control-Allow-Headers", typeof asked === "string" && asked.trim() !== "" ? asked : HEADERS);
    res.appendHeader("Vary", "Access-Control-Request-Headers");
    res.setHeader("Access-Control-Max-Age", MAX_AGE);
  }
  res.writeHead(204, { "Content-Length": "0" });
  res.end();
  return true;
}
