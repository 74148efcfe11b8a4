import { NotFoundError, SlmError, UsageError, isAbort } from "../../core/errors.js";

export type OpenAiErrorType = "invalid_request_error" | "authentication_error" | "server_error";

/** An error that becomes an HTTP answer with an OpenAI-style body; thrown by validation and handlers. */
export class HttpError extends Error {
  readonly status: number;
  readonly type: OpenAiErrorType;
  readonly param: string | null;
  readonly code: string | null;
  /** Extra response headers (Allow for 405, WWW-Authenticate for 401). */
  readonly headers: Record<string, string>;
  constructor(status: number, message: string, o: { type?: OpenAiErrorType; param?: string; code?: string; headers?: Record<string, string> } = {}) {
    super(message);
    this.name = "HttpError";
    this.status = status;
    this.type = o.type ?? (status >= 500 ? "server_error" : "invalid_request_error");
    this.param = o.param ?? null;
    this.code = o.code ?? null;
    this.headers = o.headers ?? {};
  }
}

export interface OpenAiErrorBody {
  error: { message: string; type: OpenAiErrorType; param: string | null; code: string | null };
}

export function errorBody(e: HttpError): OpenAiErrorBody {
  return { error: { message: e.message, type: e.type, param: e.param, code: e.code } };
}

/** An absolute path in a message: after a space, quote, bracket or the start, never inside a URL or org/repo. */
const ABSOLUTE_PATH = /(?<![\w.:/~-])(?:~)?\/(?:[^\s/"'`<>()]+\/)*([^\s/"'`<>()]+)/g;

/**
 * A message fit for a client: each absolute path cut to its last part. Errors written for the person at
 * the terminal name files in full (the registry's, the HF cache's); a client must not learn where they
 * are, nor, from the difference, whether some file exists (models.ts refuses paths before any load).
 */
export function withoutPaths(message: string): string {
  return message.replace(ABSOLUTE_PATH, (_all, last: string) => last);
}

/**
 * Maps whatever a handler threw onto an answer. slm's own errors keep their message (they are written
 * for users) less any filesystem paths; anything else is a bug or a native failure, reported without
 * internals or a stack.
 */
export function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  if (isAbort(err)) return new HttpError(503, "The request was cancelled (the server is shutting down).", { code: "cancelled" });
  const message = withoutPaths(err instanceof Error ? err.message : String(err));
  if (err instanceof NotFoundError) return new HttpError(404, message, { param: "model", code: "model_not_found" });
  if (err instanceof UsageError) return new HttpError(400, message);
  if (err instanceof SlmError) return new HttpError(500, message);
  return new HttpError(500, `Internal error: ${message}`);
}
