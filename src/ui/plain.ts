import type { SlmEvent } from "../core/events.js";
import { progressText } from "./progress.js";

/** Renders events as plain lines for logs and pipes: no cursor movement, progress at most every 2 s. */
export function plainEventWriter(write: (line: string) => void, verbose: boolean): (e: SlmEvent) => void {
  const lastProgress = new Map<string, number>();
  const titles = new Map<string, string>();
  const started = new Map<string, number>();
  return (e) => {
    switch (e.type) {
      case "step": {
        titles.set(e.id, e.title);
        if (e.status === "start") started.set(e.id, e.ts);
        const mark = { start: "→", done: "✓", fail: "✗", skip: "·" }[e.status];
        if (e.status === "start" && !verbose && e.id === "resolve") return;
        write(`${mark} ${e.title}${e.detail ? ` (${e.detail})` : ""}`);
        return;
      }
      case "progress": {
        const last = lastProgress.get(e.id) ?? 0;
        const finished = e.total !== undefined && e.current >= e.total;
        if (!finished && e.ts - last < 2000) return;
        if (finished && last === -1) return;
        lastProgress.set(e.id, finished ? -1 : e.ts);
        const t0 = started.get(e.id);
        const numbers = progressText({ current: e.current, total: e.total, unit: e.unit, rate: e.rate, rateUnit: e.rateUnit, elapsed: t0 === undefined ? undefined : (e.ts - t0) / 1000 });
        write(`  ${titles.get(e.id) ?? e.id}: ${[e.detail, numbers].filter(Boolean).join("  ")}`);
        return;
      }
      case "metric":
        write(`  ${e.name}: ${e.value}${e.unit ? ` ${e.unit}` : ""}`);
        return;
      case "log":
        if (e.level === "debug" && !verbose) return;
        write(e.level === "info" ? e.message : `${e.level}: ${e.message}`);
        return;
      case "result":
        return;
    }
  };
}
