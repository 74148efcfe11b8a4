import type { ProgressUnit } from "../core/events.js";
import { formatBytes, formatDuration } from "../core/format.js";

/**
 * How a step's progress reads, for every renderer: "25%", "50.0 MB / 200 MB" or "12/50 questions",
 * "10.0 MB/s", "ETA 15s". The live views lay these out as separate fields (dropping the least useful
 * when the terminal is narrow); plain output joins them.
 */
export interface ProgressNumbers {
  current: number;
  total?: number;
  unit: ProgressUnit;
  rate?: number;
  /** What `rate` counts when that is not `unit` (layers done at so many tokens/s). */
  rateUnit?: ProgressUnit;
  /** Seconds since the step started, on the events' clock. */
  elapsed?: number;
}

export interface ProgressParts {
  percent?: string;
  amount?: string;
  rate?: string;
  eta?: string;
}

/** An estimate of the time left means little before this share of the work is done… */
export const ETA_MIN_DONE = 0.05;
/** …and before the work has run this many seconds (start-up costs and bursts dominate the first ones). */
export const ETA_MIN_SECONDS = 3;

/**
 * Seconds left at the current rate, or undefined while an estimate would mislead: without a total or a
 * rate, before ETA_MIN_DONE of the work and ETA_MIN_SECONDS have passed, and once the work is done.
 * The one rule for every time-left estimate slm shows.
 */
export function etaSeconds(current: number, total: number | undefined, rate: number | undefined, elapsed: number | undefined): number | undefined {
  if (!total || total <= 0 || !rate || rate <= 0 || elapsed === undefined) return undefined;
  if (current >= total || current / total < ETA_MIN_DONE || elapsed < ETA_MIN_SECONDS) return undefined;
  return (total - current) / rate;
}

export function progressParts(p: ProgressNumbers): ProgressParts {
  const { current, total, unit, rate } = p;
  const rateUnit = p.rateUnit ?? unit;
  const parts: ProgressParts = {};
  if (total) parts.percent = `${Math.floor((Math.min(current, total) / total) * 100)}%`;
  if (unit === "bytes") parts.amount = total ? `${formatBytes(current)} / ${formatBytes(total)}` : formatBytes(current);
  else if (unit !== "percent") parts.amount = total ? `${Math.round(current)}/${Math.round(total)} ${unit}` : `${Math.round(current)} ${unit}`;
  if (rate && rate > 0 && rateUnit !== "percent") parts.rate = rateUnit === "bytes" ? `${formatBytes(rate)}/s` : `${rate >= 10 ? rate.toFixed(0) : rate.toFixed(1)} ${rateUnit}/s`;
  // A rate of something else cannot say how long the rest takes: the average pace of `unit` so far can.
  const unitRate = rateUnit === unit ? rate : p.elapsed && p.elapsed > 0 ? current / p.elapsed : undefined;
  const eta = etaSeconds(current, total, unitRate, p.elapsed);
  if (eta !== undefined) parts.eta = `ETA ${formatDuration(eta)}`;
  return parts;
}

/** The parts on one line, for logs and pipes. */
export function progressText(p: ProgressNumbers): string {
  const parts = progressParts(p);
  return [parts.percent, parts.amount, parts.rate, parts.eta].filter(Boolean).join("  ");
}
