import { type Command, InvalidArgumentError, Option } from "commander";
import { action, positiveInt } from "./action.js";
import { type RuntimeFlags, addRuntimeOptions } from "./flags.js";
import { countOf } from "../core/format.js";

interface ServeFlags extends RuntimeFlags {
  host: string;
  port: number;
  apiKey?: string;
  parallel: number;
  idleTimeout?: number;
  allowPaths?: string;
  metrics?: boolean;
  cors?: string[];
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError("--port must be a whole number from 0 to 65535 (0 = any free port).");
  return n;
}

/** `300`, `90s`, `5m`, `1h` → milliseconds; `0` means never. */
export function parseDuration(value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/i.exec(value.trim());
  if (!m) throw new InvalidArgumentError("--idle-timeout takes seconds or a duration such as 90s, 5m, 1h (0 = never unload).");
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? "s").toLowerCase() as "ms" | "s" | "m" | "h"];
  return Math.round(Number(m[1]) * unit);
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\./.test(host);
}

export function register(program: Command): void {
  const cmd = program
    .command("serve")
    .description("Serve models over an OpenAI-compatible HTTP API: chat, completions, embeddings")
    .argument("[models...]", "models to load now and keep loaded; any other model loads on its first request")
    .option("--host <address>", "address to listen on; the default serves this machine only", "127.0.0.1")
    .option("-p, --port <n>", "port; 0 picks a free one (the startup line says which)", port, 8080)
    .addOption(new Option("--api-key <key>", "require Authorization: Bearer <key> (prefer the variable: flags show in ps)").env("SLM_API_KEY"))
    .option("--parallel <n>", "requests generated at once per model; more wait in a queue", positiveInt("--parallel"), 1)
    .option("--idle-timeout <duration>", "unload a model after this long without requests: 300, 90s, 5m, 1h; 0 = never (default 5m)", parseDuration)
    .option("--allow-paths <dir>", "let requests load .gguf files by path, from this folder only (default: requests name models, never files)")
    .option("--metrics", "serve GET /metrics in Prometheus text format (behind the API key when one is set)")
    .option("--cors <origin>", "let web pages from this origin call the API (repeat or comma-separate; * = any)", collect);
  addRuntimeOptions(cmd);
  cmd.addHelpText(
    "after",
    `
Endpoints: GET /v1/models, POST /v1/chat/completions, POST /v1/completions,
POST /v1/embeddings, GET /health; POST /tokenize, POST /detokenize,
GET /tokenizer_info; GET /metrics with --metrics.
--ctx is the context of each of the --parallel sequences.
Requests may name the models given here, registered ones (slm list) and built-in
ones; a .gguf file by path only with --allow-paths DIR, and only inside DIR.
A fine-tune registered as BASE+ADAPTER shares BASE's weights in memory: one copy
of the base, a context per adapter set; adapters load on first use and unload
when idle, like models. --lora applies to requests for a bare model name only.
--metrics: request counts by endpoint and status, tokens, time to first token
and per token, queue depth and busy sequences per model (Prometheus format).
--cors ORIGIN (e.g. http://localhost:5173, or *): browsers let pages from ORIGIN
call the API; preflights are answered. Without it, no CORS headers are sent.

Examples:
  slm serve                                   # http://127.0.0.1:8080/v1, models load on first use
  slm serve tiny-arith --port 0 --parallel 4
  slm serve tiny-arith tiny-arith+sub --metrics  # one base, two models
  slm serve qwen2.5-0.5b --cors http://localhost:5173
  SLM_API_KEY=secret slm serve qwen2.5-0.5b --host 0.0.0.0
  curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{"model":"tiny-arith","messages":[{"role":"user","content":"12+34"}],"temperature":0}'`,
  );
  cmd.action(
    action(async (ctx, preload: string[], flags: ServeFlags) => {
      const [{ startServer }, { resolveRuntimeLora }, { parseGpu }, { resolveRunnable }, { parseCorsOrigins }] = await Promise.all([
        import("../backends/serve/server.js"),
        import("../backends/runtime/load.js"),
        import("../backends/llama/runtime.js"),
        import("../backends/convert/runnable.js"),
        import("../backends/serve/cors.js"),
      ]);
      const apiKey = flags.apiKey || undefined;
      const cors = flags.cors ? parseCorsOrigins(flags.cors) : undefined;
      const render = await ctx.renderer(false);
      // A PEFT adapter is converted against the first model named (its head counts); without one, its base must be on this machine.
      // (A Hugging Face folder is converted to its GGUF here, once; the server finds that GGUF when it preloads.)
      const first = preload[0] ? await resolveRunnable(preload[0], { signal: ctx.signal, onEvent: render.onEvent }, { dtype: flags.dtype }) : undefined;
      const lora = await resolveRuntimeLora(first, flags.lora, { signal: ctx.signal, onEvent: render.onEvent });
      if (!isLoopback(flags.host) && !apiKey) {
        render.onEvent({ type: "log", ts: Date.now(), level: "warn", message: `listening on ${flags.host} without an API key: anyone who can reach this port can run the models${flags.allowPaths ? ` (and load any .gguf file under ${flags.allowPaths})` : ""}. Set SLM_API_KEY.` });
      }
      const server = await startServer(
        {
          host: flags.host,
          port: flags.port,
          apiKey,
          parallel: flags.parallel,
          idleTimeoutMs: flags.idleTimeout ?? 300_000,
          preload,
          allowPaths: flags.allowPaths,
          metrics: flags.metrics,
          cors,
          load: { gpu: parseGpu(flags.gpu ?? "auto"), lora, contextSize: flags.ctx, capContextAtTraining: true, threads: flags.threads, dtype: flags.dtype, verbose: ctx.globals.verbose },
        },
        { signal: ctx.signal, onEvent: render.onEvent },
      );
      const details = [server.models.length > 0 ? `models ${server.models.join(", ")}` : "models load on first use", apiKey ? "API key required" : ""].filter(Boolean).join("; ");
      if (ctx.globals.json) render.onEvent({ type: "step", ts: Date.now(), id: "serve", status: "start", title: `Serving on ${server.url}`, detail: server.url });
      else process.stderr.write(`slm serve: listening on ${server.url} (OpenAI base URL ${server.url}/v1; ${details}; Ctrl+C stops)\n`);

      await new Promise<void>((resolve) => (ctx.signal.aborted ? resolve() : ctx.signal.addEventListener("abort", () => resolve(), { once: true })));
      await server.close();
      const stats = server.stats();
      if (ctx.globals.json) {
        render.onEvent({ type: "step", ts: Date.now(), id: "serve", status: "done", title: "Stopped" });
        render.result({ url: server.url, ...stats }, "");
      } else if (!ctx.globals.quiet) process.stderr.write(`slm serve: stopped after ${countOf(stats.requests, "request")}\n`);
    }),
  );
}
