import type { GenerateResult } from "../llama/generate.js";
import type { ModelStatus } from "./pool.js";

/**
 * The server's /metrics, in Prometheus's text exposition format (version 0.0.4).
 *
 * Written here rather than with prom-client: the format is a few lines of text per series, slm needs
 * counters, gauges read at scrape time and two histograms, and prom-client would be a new runtime
 * dependency (with its own default process metrics and registry) for about a hundred lines of code.
 *
 * Tokens and timings come from each request's GenerateResult, not from hooks in the runtimes, so every
 * runtime (llama.cpp, ONNX) is measured the same way.
 */

/** Seconds; from a few milliseconds (a token of a small model) to a minute (a long prompt on a CPU). */
const FIRST_TOKEN_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const PER_TOKEN_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

class Histogram {
  readonly counts: number[];
  sum = 0;
  count = 0;
  constructor(readonly bounds: readonly number[]) {
    this.counts = bounds.map(() => 0);
  }
  /** `times` observations of `value` (the per-token latency of a request's tokens is one mean, n−1 times). */
  observe(value: number, times = 1): void {
    this.bounds.forEach((b, i) => {
      if (value <= b) this.counts[i]! += times;
    });
    this.sum += value * times;
    this.count += times;
  }
}

function escape(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function labels(l: Record<string, string>): string {
  const parts = Object.entries(l).map(([k, v]) => `${k}="${escape(v)}"`);
  return parts.length > 0 ? `{${parts.join(",")}}` : "";
}

/** A number as Prometheus writes it (integers plainly, +Inf for infinity). */
function num(n: number): string {
  return n === Infinity ? "+Inf" : Number.isInteger(n) ? String(n) : String(Number(n.toPrecision(12)));
}

function family(name: string, type: string, help: string, lines: string[]): string[] {
  return [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...lines];
}

export class Metrics {
  /** `endpoint\0status` → requests answered. */
  private readonly requests = new Map<string, number>();
  private readonly promptTokens = new Map<string, number>();
  private readonly completionTokens = new Map<string, number>();
  private readonly firstToken = new Map<string, Histogram>();
  private readonly perToken = new Map<string, Histogram>();

  /** One answered request; `endpoint` is a route's path (never the raw URL: a label's values must stay few). */
  request(endpoint: string, status: number): void {
    const k = `${endpoint}\0${status}`;
    this.requests.set(k, (this.requests.get(k) ?? 0) + 1);
  }

  /** One generation (a choice) finished by `model`. */
  generated(model: string, r: GenerateResult): void {
    this.promptTokens.set(model, (this.promptTokens.get(model) ?? 0) + r.promptTokens);
    this.completionTokens.set(model, (this.completionTokens.get(model) ?? 0) + r.completionTokens);
    if (r.completionTokens < 1) return;
    histogramOf(this.firstToken, model, FIRST_TOKEN_BUCKETS).observe(r.timings.firstTokenMs / 1000);
    if (r.completionTokens < 2) return;
    const perToken = Math.max(0, r.timings.totalMs - r.timings.firstTokenMs) / (r.completionTokens - 1) / 1000;
    histogramOf(this.perToken, model, PER_TOKEN_BUCKETS).observe(perToken, r.completionTokens - 1);
  }

  /** The exposition, with the pool's state (queues, busy sequences, loaded models) read now. */
  render(models: readonly ModelStatus[]): string {
    const out: string[] = [];
    const perModel = (m: Map<string, number>) => [...m].map(([model, v]) => `${labels({ model })} ${num(v)}`);
    out.push(
      ...family(
        "slm_requests_total",
        "counter",
        "HTTP requests answered, by endpoint and status code.",
        [...this.requests].map(([k, v]) => {
          const [endpoint, status] = k.split("\0") as [string, string];
          return `slm_requests_total${labels({ endpoint, status })} ${num(v)}`;
        }),
      ),
      ...family("slm_prompt_tokens_total", "counter", "Prompt tokens evaluated, by model.", perModel(this.promptTokens).map((l) => `slm_prompt_tokens_total${l}`)),
      ...family("slm_completion_tokens_total", "counter", "Tokens generated, by model.", perModel(this.completionTokens).map((l) => `slm_completion_tokens_total${l}`)),
      ...histogram("slm_time_to_first_token_seconds", "Time from the start of a generation to its first token (prompt processing included).", this.firstToken),
      ...histogram("slm_time_per_output_token_seconds", "Time per generated token after the first.", this.perToken),
      ...family("slm_queue_depth", "gauge", "Requests waiting for a free sequence, by model.", models.map((m) => `slm_queue_depth${labels({ model: m.id })} ${m.queued}`)),
      ...family("slm_busy_sequences", "gauge", "Sequences generating now, by model.", models.map((m) => `slm_busy_sequences${labels({ model: m.id })} ${m.busy}`)),
      ...family("slm_sequences", "gauge", "Sequences a model may generate at once (--parallel).", models.map((m) => `slm_sequences${labels({ model: m.id })} ${m.parallel}`)),
      ...family("slm_models_loaded", "gauge", "Models (each base or base+adapter) loaded and ready.", [`slm_models_loaded ${models.filter((m) => m.state === "ready").length}`]),
    );
    return `${out.join("\n")}\n`;
  }
}

function histogramOf(m: Map<string, Histogram>, model: string, bounds: readonly number[]): Histogram {
  let h = m.get(model);
  if (!h) m.set(model, (h = new Histogram(bounds)));
  return h;
}

function histogram(name: string, help: string, byModel: Map<string, Histogram>): string[] {
  const lines: string[] = [];
  for (const [model, h] of byModel) {
    h.bounds.forEach((b, i) => lines.push(`${name}_bucket${labels({ model, le: num(b) })} ${num(h.counts[i]!)}`));
    lines.push(`${name}_bucket${labels({ model, le: "+Inf" })} ${num(h.count)}`);
    lines.push(`${name}_sum${labels({ model })} ${num(h.sum)}`);
    lines.push(`${name}_count${labels({ model })} ${num(h.count)}`);
  }
  return family(name, "histogram", help, lines);
}
