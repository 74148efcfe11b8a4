import { type LogLevel, PROGRESS_UNITS, type ProgressUnit, type SlmEvent } from "../../core/events.js";

// Python's logging names too, so a recipe may pass record.levelname through.
const LEVELS: Record<string, LogLevel> = { debug: "debug", info: "info", warn: "warn", warning: "warn", error: "warn", DEBUG: "debug", INFO: "info", WARNING: "warn", ERROR: "warn" };

/**
 * Reads one line of a recipe's stdout as an event of slm's vocabulary. Recipes are Python scripts that
 * may also print (a library's warning, a stray print()): anything that is not a well-formed event comes
 * back undefined and is shown as a log line instead of breaking the run.
 */
export function parseEventLine(line: string, now = Date.now()): SlmEvent | undefined {
  const text = line.trim();
  if (!text.startsWith("{")) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  const ts = typeof o.ts === "number" && Number.isFinite(o.ts) ? o.ts : now;
  const str = (k: string) => typeof o[k] === "string";
  const num = (k: string) => typeof o[k] === "number" && Number.isFinite(o[k]);
  const optNum = (k: string) => o[k] === undefined || o[k] === null || num(k);
  switch (o.type) {
    case "step":
      if (!str("id") || !str("title") || !["start", "done", "fail", "skip"].includes(o.status as string)) return undefined;
      return { type: "step", ts, id: o.id as string, status: o.status as "start", title: o.title as string, ...(str("detail") ? { detail: o.detail as string } : {}) };
    case "progress": {
      const rateUnit = [o.rate_unit, o.rateUnit].find((u): u is ProgressUnit => (PROGRESS_UNITS as readonly unknown[]).includes(u));
      if (!str("id") || !(PROGRESS_UNITS as readonly string[]).includes(o.unit as string) || !num("current") || !optNum("total") || !optNum("rate")) return undefined;
      return {
        type: "progress",
        ts,
        id: o.id as string,
        unit: o.unit as ProgressUnit,
        current: o.current as number,
        ...(num("total") ? { total: o.total as number } : {}),
        ...(num("rate") ? { rate: o.rate as number } : {}),
        ...(rateUnit ? { rateUnit } : {}),
        ...(str("detail") ? { detail: o.detail as string } : {}),
      };
    }
    case "metric":
      if (!str("name") || !num("value") || !optNum("step")) return undefined;
      return { type: "metric", ts, name: o.name as string, value: o.value as number, ...(str("unit") ? { unit: o.unit as string } : {}), ...(num("step") ? { step: o.step as number } : {}) };
    case "log":
      if (!str("message")) return undefined;
      return { type: "log", ts, level: LEVELS[String(o.level)] ?? "info", message: o.message as string };
    case "result":
      return { type: "result", ts, data: o.data ?? null };
    default:
      return undefined;
  }
}
