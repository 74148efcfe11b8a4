import type { ServerResponse } from "node:http";

/**
 * Server-sent events as OpenAI streams them: `data: <json>\n\n` per chunk, `data: [DONE]` at the end.
 * Headers go out with the first event, so an error found before any output (a bad schema, a prompt that
 * does not fit) can still be answered with a proper status code and JSON body.
 */
export class SseWriter {
  private started = false;
  constructor(private readonly res: ServerResponse) {}

  get hasStarted(): boolean {
    return this.started;
  }

  /** False once the client has gone or the stream was ended. */
  get open(): boolean {
    return !this.res.writableEnded && !this.res.destroyed;
  }

  send(data: unknown): void {
    if (!this.open) return;
    if (!this.started) {
      this.started = true;
      this.res.writeHead(200, {
        "Content-Type": "text/event-stream; charset=utf-8",
        "Cache-Control": "no-cache",
        Connection: "keep-alive",
        // Reverse proxies (nginx) would otherwise buffer the stream.
        "X-Accel-Buffering": "no",
      });
    }
    // Chunks are a few bytes each and a generation is bounded by the context, so writes are not
    // throttled on backpressure: at worst one generation's text waits in memory for a slow client.
    this.res.write(`data: ${JSON.stringify(data)}\n\n`);
  }

  done(): void {
    if (!this.open) return;
    this.res.end("data: [DONE]\n\n");
  }

  /** An error after the stream started: OpenAI's clients raise it from the iterator. */
  fail(error: unknown): void {
    if (!this.open) return;
    this.send(error);
    this.res.end();
  }
}
