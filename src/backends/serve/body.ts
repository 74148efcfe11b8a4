import type { IncomingMessage } from "node:http";
import { HttpError } from "./httpError.js";

/** 8 MiB: room for a long conversation or a batch of embedding inputs, far below a memory risk. */
export const DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024;

/**
 * Reads a JSON object body. Bytes past the limit are read and dropped rather than left unread: answering
 * 413 while the client is still sending and then closing the socket would make many clients see a
 * connection reset instead of the 413. A client that keeps sending far past the limit is cut off.
 */
export function readJsonBody(req: IncomingMessage, maxBytes: number): Promise<Record<string, unknown>> {
  const type = req.headers["content-type"];
  // Requiring JSON (when a type is given) makes browsers send a CORS preflight, which this server does
  // not answer: a web page cannot make a local server spend its CPU through a "simple" form post.
  if (type !== undefined && !/^application\/(?:[\w.+-]*\+)?json\s*(?:;|$)/i.test(type)) {
    req.resume();
    return Promise.reject(new HttpError(415, `Send the request body as JSON with Content-Type: application/json (got "${type}").`, { code: "unsupported_media_type" }));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = Number(req.headers["content-length"] ?? 0) > maxBytes;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) tooLarge = true;
      if (!tooLarge) chunks.push(chunk);
      else if (size > maxBytes * 4) {
        reject(new HttpError(413, `The request body is larger than ${maxBytes} bytes.`, { code: "request_too_large" }));
        req.destroy();
      }
    });
    req.on("error", reject);
    req.on("aborted", () => reject(new HttpError(400, "The request body was cut off.")));
    req.on("end", () => {
      if (tooLarge) return reject(new HttpError(413, `The request body is larger than ${maxBytes} bytes.`, { code: "request_too_large" }));
      const text = Buffer.concat(chunks).toString("utf8");
      if (text.trim() === "") return reject(new HttpError(400, "The request body is empty; send a JSON object."));
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch (err) {
        return reject(new HttpError(400, `The request body is not valid JSON (${(err as Error).message}).`, { code: "invalid_json" }));
      }
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return reject(new HttpError(400, "The request body must be a JSON object."));
      resolve(parsed as Record<string, unknown>);
    });
  });
}
