import http, { type IncomingMessage } from "node:http";
import https from "node:https";
import { NetworkError, SlmError, CancelledError } from "../../core/errors.js";
import { connectionError, hubHttpError } from "./errors.js";

const agents = {
  "http:": new http.Agent({ keepAlive: true }),
  "https:": new https.Agent({ keepAlive: true }),
};

/** A failure worth retrying: 5xx, a dropped or stalled connection. */
export class RetryableError extends NetworkError {}

export interface RangeRequest {
  url: string;
  start: number;
  /** Inclusive end byte; undefined reads to the end. */
  end?: number;
  token?: string;
  signal?: AbortSignal;
  /** Milliseconds without a byte before the connection counts as stalled. */
  stallMs: number;
  repo: string;
  repoPath: string;
}

/**
 * GET with a Range header, following redirects by hand because the Hub sends LFS files to a CDN: the
 * token goes only to the Hub's own origin, never to the redirect target.
 */
export async function openRange(req: RangeRequest): Promise<IncomingMessage> {
  let url = new URL(req.url);
  const origin = url.origin;
  for (let hop = 0; hop < 10; hop++) {
    const res = await get(url, req, url.origin === origin ? req.token : undefined);
    const status = res.statusCode ?? 0;
    if (status >= 300 && status < 400 && res.headers.location) {
      res.resume();
      url = new URL(res.headers.location, url);
      continue;
    }
    if (status === 200 || status === 206) {
      if (status === 200 && req.start > 0) {
        res.destroy();
        throw new SlmError(`The server ignored the byte range for ${req.repoPath}; cannot resume or download in parts.`, { hint: "Retry with --connections 1." });
      }
      return res;
    }
    res.resume();
    if (status >= 500 || status === 429) throw new RetryableError(`HTTP ${status} for ${req.repoPath}`, { status });
    if (status === 416) throw new RetryableError(`HTTP 416 (range not satisfiable) for ${req.repoPath}`, { status });
    throw hubHttpError(status, req.repoPath, { repo: req.repo, errorCode: res.headers["x-error-code"] as string | undefined, hasToken: !!req.token });
  }
  throw new NetworkError(`Too many redirects for ${req.repoPath}.`);
}

function get(url: URL, req: RangeRequest, token: string | undefined): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    if (req.signal?.aborted) return reject(new CancelledError());
    const mod = url.protocol === "https:" ? https : http;
    const headers: Record<string, string> = { "User-Agent": "slm", "Accept-Encoding": "identity" };
    if (req.start > 0 || req.end !== undefined) headers.Range = `bytes=${req.start}-${req.end ?? ""}`;
    if (token) headers.Authorization = `Bearer ${token}`;
    const r = mod.get(url, { headers, agent: agents[url.protocol as "http:" | "https:"], signal: req.signal }, resolve);
    r.setTimeout(req.stallMs, () => r.destroy(new RetryableError(`No data for ${req.stallMs / 1000}s from ${url.host} (stalled).`)));
    r.on("error", (err) => {
      if (req.signal?.aborted) reject(new CancelledError());
      else if (err instanceof SlmError) reject(err);
      else reject(Object.assign(new RetryableError(connectionError(url.origin, err).message), { cause: err }));
    });
  });
}
