import { createHash, timingSafeEqual } from "node:crypto";
import { setMaxListeners } from "node:events";
import { type IncomingMessage, type Server, type ServerResponse, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { CancelledError, UsageError } from "../../core/errors.js";
import { type BackendContext, emit } from "../../core/events.js";
import { DEFAULT_MAX_BODY_BYTES } from "./body.js";
import { type CorsOrigins, applyCors } from "./cors.js";
import { sendJson } from "./generation.js";
import { METRICS_ROUTE, ROUTES } from "./handlers.js";
import { HttpError, errorBody, toHttpError } from "./httpError.js";
import { ServedModels } from "./models.js";
import { Metrics } from "./metrics.js";
import { ModelPool, type PoolOptions } from "./pool.js";
import { type ServerStats, matchRoute } from "./router.js";
import { resolveModel } from "../store/resolve.js";
import { ensureGguf } from "../convert/runnable.js";

export interface ServeOptions {
  /** Default 127.0.0.1: nothing outside this machine can reach the server unless asked for. */
  host?: string;
  /** Default 8080; 0 picks a free port (the handle's `url` says which). */
  port?: number;
  /** When set, every /v1 request needs `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** Concurrent generations per model (context sequences); default 1. */
  parallel?: number;
  /** Default 5 minutes; 0 never unloads. */
  idleTimeoutMs?: number;
  /** Models to load before listening; they stay loaded. */
  preload?: string[];
  load?: PoolOptions["load"];
  /**
   * A folder requests may load .gguf files from by path (relative paths are taken inside it; symlinks
   * are resolved before the check). Without it, requests name models only.
   */
  allowPaths?: string;
  maxBodyBytes?: number;
  /** Serve GET /metrics (Prometheus text format); behind the API key when one is set. */
  metrics?: boolean;
  /** Origins whose browser pages may call the API (CORS); none when unset. */
  cors?: CorsOrigins;
}

export interface ServerHandle {
  url: string;
  host: string;
  port: number;
  /** Names of the preloaded models. */
  models: string[];
  stats(): ServerStats;
  /** Stops accepting, aborts running generations, waits for them, disposes the models. */
  close(): Promise<void>;
}

/** How long close() lets aborted requests finish before cutting their connections. */
const CLOSE_GRACE_MS = 5_000;

function digest(s: string): Buffer {
  return createHash("sha256").update(s).digest();
}

/** Constant-time comparison (of hashes, so lengths match too): the key cannot be guessed byte by byte. */
function keyMatches(header: string | undefined, key: Buffer): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  return !!m && timingSafeEqual(digest(m[1]!), key);
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      server.off("listening", onListening);
      if (err.code === "EADDRINUSE") reject(new UsageError(`Port ${port} on ${host} is already in use.`, { hint: "Choose another with --port, or --port 0 for any free one." }));
      else if (err.code === "EACCES") reject(new UsageError(`Not allowed to listen on ${host}:${port}.`, { hint: "Ports below 1024 need privileges; choose another --port." }));
      else if (err.code === "EADDRNOTAVAIL" || err.code === "ENOTFOUND") reject(new UsageError(`Cannot listen on ${host}: no such address on this machine.`));
      else reject(err);
    };
    const onListening = () => {
      server.off("error", onError);
      resolve();
    };
    server.once("error", onError);
    server.once("listening", onListening);
    server.listen(port, host);
  });
}

/**
 * An OpenAI-compatible HTTP server on node:http. Preloads the given models, then listens; resolves once
 * it accepts connections. Never prints: startup, loads and (at debug level) each request are events.
 */
export async function startServer(o: ServeOptions = {}, ctx: BackendContext = {}): Promise<ServerHandle> {
  const host = o.host ?? "127.0.0.1";
  const port = o.port ?? 8080;
  const key = o.apiKey ? digest(o.apiKey) : undefined;
  const maxBodyBytes = o.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const served = new ServedModels(o.allowPaths);
  const pool = new ModelPool({ load: o.load ?? {}, parallel: o.parallel ?? 1, idleTimeoutMs: o.idleTimeoutMs ?? 300_000, models: served, onEvent: ctx.onEvent });
  const stats: ServerStats = { requests: 0, active: 0, aborted: 0, failed: 0 };
  const metrics = o.metrics ? new Metrics() : undefined;
  // Like llama-server's, /metrics exists only when asked for: otherwise it is an unknown path (404).
  const routes = metrics ? [...ROUTES, METRICS_ROUTE] : ROUTES;
  // Named from the routes themselves, so a new endpoint is never missing from the 404's list.
  const offered = [...new Set(routes.flatMap((r) => (typeof r.path === "string" ? [r.path] : [])))].join(", ");

  // Ctrl+C while preloading stops the loads; afterwards the caller stops the server with close().
  const onEarlyAbort = () => void pool.close();
  ctx.signal?.addEventListener("abort", onEarlyAbort, { once: true });
  const models: string[] = [];
  try {
    // The operator's own references: any model slm can resolve, paths included.
    for (const ref of o.preload ?? []) {
      // A Hugging Face, GPTQ or AWQ folder is converted to GGUF once, here, with progress; never on a request.
      served.addStarted(ref, await ensureGguf(resolveModel(ref, { dtype: o.load?.dtype }), ctx));
      models.push(await pool.preload(ref));
    }
  } catch (err) {
    await pool.close();
    throw ctx.signal?.aborted ? new CancelledError() : err;
  } finally {
    ctx.signal?.removeEventListener("abort", onEarlyAbort);
  }
  if (ctx.signal?.aborted) {
    await pool.close();
    throw new CancelledError();
  }

  const shutdown = new AbortController();
  // Every in-flight request listens on this signal; the default limit of 10 would warn under load.
  setMaxListeners(0, shutdown.signal);
  const inflight = new Set<Promise<void>>();

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const started = performance.now();
    let pathname: string;
    try {
      pathname = new URL(req.url ?? "/", "http://localhost").pathname;
    } catch {
      // A request target node's parser let through but URL cannot read: nothing can match it.
      pathname = "/?";
    }
    const ctl = new AbortController();
    let gone = false;
    let endpoint = "other";
    const onShutdown = () => ctl.abort();
    shutdown.signal.addEventListener("abort", onShutdown, { once: true });
    res.on("close", () => {
      shutdown.signal.removeEventListener("abort", onShutdown);
      // "close" before the response was finished: the client went away; stop its generation.
      if (!res.writableFinished) {
        gone = true;
        ctl.abort();
      }
    });
    try {
      const match = matchRoute(routes, req.method ?? "GET", pathname);
      // A preflight (OPTIONS, which no route takes) counts under the route it asks about, not "other".
      const asked = o.cors && req.method === "OPTIONS" ? matchRoute(routes, String(req.headers["access-control-request-method"] ?? ""), pathname) : match;
      if ("route" in asked) endpoint = asked.route.name ?? String(asked.route.path);
      // Before anything is written, so that JSON, event streams and errors all carry the headers.
      if (o.cors && applyCors(o.cors, req, res)) return;
      if (shutdown.signal.aborted) throw new HttpError(503, "The server is shutting down.");
      if ("status" in match) {
        req.resume();
        if (match.status === 405) throw new HttpError(405, `${req.method} is not allowed on ${pathname}; use ${match.allow.join(" or ")}.`, { code: "method_not_allowed", headers: { Allow: match.allow.join(", ") } });
        throw new HttpError(404, `No route for ${req.method} ${pathname}. This server offers ${offered}.`, { code: "not_found" });
      }
      endpoint = match.route.name ?? String(match.route.path);
      const authorized = !key || keyMatches(req.headers.authorization, key);
      if (match.route.auth && !authorized) {
        req.resume();
        const given = req.headers.authorization !== undefined;
        throw new HttpError(401, given ? "Incorrect API key provided." : "No API key provided; send it as Authorization: Bearer <key>.", { code: "invalid_api_key", headers: { "WWW-Authenticate": "Bearer" } });
      }
      await match.route.handler(req, res, { pool, stats, metrics, maxBodyBytes, signal: ctl.signal, clientGone: () => gone, authorized, params: match.params });
    } catch (err) {
      if (gone) {
        stats.aborted++;
        return;
      }
      const e = toHttpError(err);
      // Requests cut short by a shutdown are expected, not failures worth a warning.
      if (e.status >= 500 && !shutdown.signal.aborted) {
        stats.failed++;
        // The operator's log keeps what the client's answer leaves out (paths).
        emit(ctx.onEvent, { type: "log", level: "warn", message: `${req.method} ${pathname}: ${err instanceof Error && !(err instanceof HttpError) ? err.message : e.message}` });
      }
      if (!res.headersSent) {
        const headers = { ...e.headers };
        // A body left unread (413) or a server on its way down: do not keep the connection.
        if (e.status === 413 || shutdown.signal.aborted) headers.Connection = "close";
        sendJson(res, e.status, errorBody(e), headers);
      } else if (!res.writableEnded) {
        // Only event streams send headers before they finish: end this one with the error as its last event.
        res.end(`data: ${JSON.stringify(errorBody(e))}\n\n`);
      }
    } finally {
      stats.requests++;
      // 499, nginx's "client closed request", for a client that left before its answer.
      metrics?.request(endpoint, gone ? 499 : res.statusCode);
      emit(ctx.onEvent, { type: "log", level: "debug", message: `${req.method} ${pathname} ${gone ? "client gone" : res.statusCode} ${Math.round(performance.now() - started)} ms` });
    }
  };

  const server = createServer((req, res) => {
    stats.active++;
    // handle() answers its own errors; this only catches a failure while answering one.
    const p = handle(req, res)
      .catch(() => void res.destroy())
      .finally(() => {
        stats.active--;
        inflight.delete(p);
      });
    inflight.add(p);
  });
  // Malformed HTTP (not JSON, the protocol itself): answer 400 and drop the connection, never crash.
  server.on("clientError", (_err, socket) => {
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    else socket.destroy();
  });
  try {
    await listen(server, host, port);
  } catch (err) {
    await pool.close();
    throw err;
  }
  const address = server.address() as AddressInfo;
  const shownHost = address.address.includes(":") ? `[${address.address}]` : address.address;

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      shutdown.abort();
      server.closeIdleConnections();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled([...inflight]), new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS)))]);
      clearTimeout(timer);
      server.closeAllConnections();
      await closed;
      await pool.close();
    })());

  return { url: `http://${shownHost}:${address.port}`, host: address.address, port: address.port, models, stats: () => ({ ...stats }), close };
}
