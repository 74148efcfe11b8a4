/**
 * The one event vocabulary shared by backends, renderers and Python recipes (which emit the same shapes
 * as NDJSON). Every event carries a millisecond timestamp.
 */
export type StepStatus = "start" | "done" | "fail" | "skip";

export interface StepEvent {
  type: "step";
  ts: number;
  id: string;
  status: StepStatus;
  title: string;
  detail?: string;
}

/**
 * What a progress event counts, named as a user would ("12/50 questions", not "12/50 steps"); `percent`
 * is a share of 100 reported by a tool that gives nothing else (cmake).
 */
export const PROGRESS_UNITS = ["bytes", "steps", "tokens", "questions", "repetitions", "tensors", "chunks", "examples", "packages", "layers", "percent"] as const;
export type ProgressUnit = (typeof PROGRESS_UNITS)[number];

export interface ProgressEvent {
  type: "progress";
  ts: number;
  /** The step this progress belongs to (e.g. one file of a download). */
  id: string;
  unit: ProgressUnit;
  current: number;
  total?: number;
  /** Units per second (of `rateUnit` when given), smoothed by the emitter. */
  rate?: number;
  /**
   * What `rate` counts when that is not `unit`: GPTQ counts decoder layers done, but a layer's time
   * depends on its size, so its speed reads better in calibration tokens per second.
   */
  rateUnit?: ProgressUnit;
  /** What the step is busy with right now, when that changes within it (the package pip is downloading). */
  detail?: string;
}

export interface MetricEvent {
  type: "metric";
  ts: number;
  name: string;
  value: number;
  unit?: string;
  step?: number;
}

export type LogLevel = "debug" | "info" | "warn";

export interface LogEvent {
  type: "log";
  ts: number;
  level: LogLevel;
  message: string;
}

export interface ResultEvent {
  type: "result";
  ts: number;
  data: unknown;
}

export type SlmEvent = StepEvent | ProgressEvent | MetricEvent | LogEvent | ResultEvent;

export type EventSink = (e: SlmEvent) => void;

/** What every backend function accepts besides its own options. */
export interface BackendContext {
  signal?: AbortSignal;
  onEvent?: EventSink;
}

type DistributiveOmit<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never;

/** Emits an event with the current timestamp; a no-op without a sink. */
export function emit(sink: EventSink | undefined, e: DistributiveOmit<SlmEvent, "ts">): void {
  sink?.({ ...e, ts: Date.now() } as SlmEvent);
}

/**
 * Runs `fn` as one step: a `start` event before it, `done` (with an optional detail made from its
 * result) after it, or `fail` if it throws ("cancelled" when it was stopped by Ctrl+C).
 */
export async function withStep<T>(ctx: BackendContext, id: string, title: string, fn: () => Promise<T>, detail?: (t: T) => string | undefined): Promise<T> {
  emit(ctx.onEvent, { type: "step", id, status: "start", title });
  try {
    const out = await fn();
    emit(ctx.onEvent, { type: "step", id, status: "done", title, detail: detail?.(out) });
    return out;
  } catch (err) {
    const cancelled = err instanceof Error && (err.name === "CancelledError" || err.name === "AbortError");
    emit(ctx.onEvent, { type: "step", id, status: "fail", title, detail: cancelled ? "cancelled" : undefined });
    throw err;
  }
}
