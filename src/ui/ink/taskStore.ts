import type { ProgressUnit, SlmEvent } from "../../core/events.js";

export interface TaskLine {
  id: string;
  title: string;
  status: "start" | "done" | "fail" | "skip";
  detail?: string;
  current?: number;
  total?: number;
  unit?: ProgressUnit;
  rate?: number;
  rateUnit?: ProgressUnit;
  /** What the step is busy with now (from its progress events). */
  now?: string;
  /** When the step started and when it last reported, on the events' clock (ms). */
  startedAt: number;
  lastTs: number;
}

export interface TaskState {
  /** Finished steps and log lines, in order; rendered once with <Static>. */
  finished: { key: string; text: string; kind: "done" | "fail" | "skip" | "log" | "warn" }[];
  active: TaskLine[];
}

/** Folds events into what the live view shows; kept outside React so tests can drive it directly. */
export class TaskStore {
  private state: TaskState = { finished: [], active: [] };
  private listeners = new Set<() => void>();
  private seq = 0;

  get = (): TaskState => this.state;

  subscribe = (fn: () => void): (() => void) => {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  };

  push(e: SlmEvent, verbose = false): void {
    const s = this.state;
    let next: TaskState | undefined;
    if (e.type === "step") {
      if (e.status === "start") {
        next = { ...s, active: [...s.active.filter((l) => l.id !== e.id), { id: e.id, title: e.title, status: "start", detail: e.detail, startedAt: e.ts, lastTs: e.ts }] };
      } else {
        const text = `${e.title}${e.detail ? ` (${e.detail})` : ""}`;
        next = { finished: [...s.finished, { key: `${this.seq++}`, text, kind: e.status }], active: s.active.filter((l) => l.id !== e.id) };
      }
    } else if (e.type === "progress") {
      next = { ...s, active: s.active.map((l) => (l.id === e.id ? { ...l, current: e.current, total: e.total, unit: e.unit, rate: e.rate, rateUnit: e.rateUnit, now: e.detail ?? l.now, lastTs: e.ts } : l)) };
    } else if (e.type === "log" && (e.level !== "debug" || verbose)) {
      next = { ...s, finished: [...s.finished, { key: `${this.seq++}`, text: e.message, kind: e.level === "warn" ? "warn" : "log" }] };
    } else if (e.type === "metric") {
      next = { ...s, finished: [...s.finished, { key: `${this.seq++}`, text: `${e.name}: ${e.value}${e.unit ? ` ${e.unit}` : ""}`, kind: "log" }] };
    }
    if (next) {
      this.state = next;
      for (const fn of this.listeners) fn();
    }
  }
}
