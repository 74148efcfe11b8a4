import type { SlmEvent } from "../core/events.js";
import { formatBytes, formatDuration } from "../core/format.js";

/** Renders events as plain lines for logs and pipes: no cursor movement, progress at most every 2 s. */
export function plainEventWriter(write: (line: string) => void, verbose: boolean): (e: SlmEvent) => void {
  const lastProgress = new Map<string, number>();
  const titles = new Map<string, string>();
  return (e) => {
    switch (e.type) {
      case "step": {
        titles.set(e.id, e.title);
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
        write(`  ${titles.get(e.id) ?? e.id}: ${progressText(e.current, e.total, e.unit, e.rate)}`);
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

export function progressText(current: number, total: number | undefined, unit: string, rate?: number): string {
  const fmt = (n: number) => (unit === "bytes" ? formatBytes(n) : `${Math.round(n)} ${unit}`);
  const parts = [total ? `${Math.floor((current / total) * 100)}%` : "", total ? `${fmt(current)} / ${fmt(total)}` : fmt(current)];
  if (rate && rate > 0) {
    parts.push(unit === "bytes" ? `${formatBytes(rate)}/s` : `${rate.toFixed(1)} ${unit}/s`);
    if (total && current < total) parts.push(`ETA ${formatDuration((total - current) / rate)}`);
  }
  return parts.filter(Boolean).join("  ");
}
