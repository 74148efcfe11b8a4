import type { IncomingMessage, ServerResponse } from "node:http";
import type { Metrics } from "./metrics.js";
import type { ModelPool } from "./pool.js";

export interface ServerStats {
  /** Requests answered (any status), in flight now, stopped by a client that went away, answered 5xx. */
  requests: number;
  active: number;
  aborted: number;
  failed: number;
}

/** What a handler gets besides the request: the shared pool and this request's state. */
export interface RequestContext {
  pool: ModelPool;
  stats: ServerStats;
  /** Set with --metrics. */
  metrics?: Metrics;
  maxBodyBytes: number;
  /** Aborted when the client disconnects or the server shuts down. */
  signal: AbortSignal;
  clientGone(): boolean;
  /** Whether the request carried the API key (or none is required): /health shows details only then. */
  authorized: boolean;
  /** Path parameters of the matched route (e.g. a model id). */
  params: string[];
}

export type Handler = (req: IncomingMessage, res: ServerResponse, ctx: RequestContext) => Promise<void>;

export interface Route {
  method: "GET" | "POST";
  /** An exact path, or a pattern whose groups become `params`. */
  path: string | RegExp;
  /** The endpoint's name in /metrics, for a pattern (its path otherwise). */
  name?: string;
  /** Needs the API key when one is set. */
  auth: boolean;
  handler: Handler;
}

export type Match = { route: Route; params: string[] } | { status: 404 } | { status: 405; allow: string[] };

/** Finds the route for a request; a known path with another method is 405 (with Allow), anything else 404. */
export function matchRoute(routes: readonly Route[], method: string, pathname: string): Match {
  // Trailing slashes are forgiven: some clients build "/v1/" + "models/".
  const p = pathname.length > 1 ? pathname.replace(/\/+$/, "") : pathname;
  // HEAD is a GET without a body, which node:http leaves out by itself.
  const m = method === "HEAD" ? "GET" : method;
  const allow: string[] = [];
  for (const route of routes) {
    let params: string[] | undefined;
    if (typeof route.path === "string") params = route.path === p ? [] : undefined;
    else {
      const r = route.path.exec(p);
      params = r ? r.slice(1).map((s) => safeDecode(s ?? "")) : undefined;
    }
    if (!params) continue;
    if (route.method === m) return { route, params };
    allow.push(route.method);
  }
  return allow.length > 0 ? { status: 405, allow } : { status: 404 };
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
