import { table } from "../../core/format.js";
import type { EvalResult, ModelResult } from "./evaluate.js";
import type { Proportion } from "./match.js";

/**
 * The comparison table every output shares (terminal, Markdown, HTML): models as rows, one column per
 * metric, each cell a number for ranking and a text for people. The best value of a column is marked
 * when more than one model has a value in it.
 */
export interface Cell {
  value: number;
  text: string;
  /** 95 % interval, for accuracies (drawn as error bars). */
  low?: number;
  high?: number;
}

export interface Column {
  key: string;
  label: string;
  /** Which way is better. */
  better: "higher" | "lower";
  /** Shares (0..1) are shown as percentages and drawn on a 0–100 % axis. */
  share: boolean;
  cells: (Cell | undefined)[];
  /** Row indexes of the best value (ties all marked); empty with fewer than two values. */
  best: number[];
}

export interface ComparisonTable {
  models: string[];
  columns: Column[];
}

const pct = (x: number) => `${(x * 100).toFixed(1)}`;

function shareCell(p: Proportion): Cell {
  return { value: p.value, text: `${pct(p.value)} % (${pct(p.low)}–${pct(p.high)})`, low: p.low, high: p.high };
}

export function bestOf(cells: (Cell | undefined)[], better: "higher" | "lower"): number[] {
  const present = cells.flatMap((c, i) => (c && Number.isFinite(c.value) ? [{ v: c.value, i }] : []));
  if (present.length < 2) return [];
  const target = better === "higher" ? Math.max(...present.map((p) => p.v)) : Math.min(...present.map((p) => p.v));
  return present.filter((p) => p.v === target).map((p) => p.i);
}

function column(key: string, label: string, better: "higher" | "lower", share: boolean, models: ModelResult[], cell: (m: ModelResult) => Cell | undefined): Column {
  const cells = models.map(cell);
  return { key, label, better, share, cells, best: bestOf(cells, better) };
}

export function comparisonTable(r: EvalResult): ComparisonTable {
  const columns: Column[] = [];
  for (const t of r.tasks) {
    const scoreOf = (m: ModelResult) => m.tasks.find((x) => x.task === t.name)?.score;
    if (t.kind === "generate") {
      columns.push(
        column(`${t.name}:accuracy`, `${t.name}`, "higher", true, r.models, (m) => {
          const s = scoreOf(m);
          return s?.kind === "generate" ? shareCell(s.accuracy) : undefined;
        }),
      );
    } else {
      columns.push(
        column(`${t.name}:acc`, `${t.name} acc`, "higher", true, r.models, (m) => {
          const s = scoreOf(m);
          return s?.kind === "choice" ? shareCell(s.acc) : undefined;
        }),
        column(`${t.name}:acc_norm`, `${t.name} acc_norm`, "higher", true, r.models, (m) => {
          const s = scoreOf(m);
          return s?.kind === "choice" ? shareCell(s.accNorm) : undefined;
        }),
      );
    }
  }
  if (r.text) {
    const name = r.text.name;
    columns.push(
      column("ppl", `ppl ${name}`, "lower", false, r.models, (m) => {
        const p = m.kld ?? m.perplexity;
        return p ? { value: p.ppl, text: `${p.ppl.toFixed(3)} ± ${p.pplError.toFixed(3)}` } : undefined;
      }),
    );
    if (r.text.kldBase) {
      columns.push(
        column("kld_mean", "KLD mean", "lower", false, r.models, (m) => (m.kld ? { value: m.kld.mean, text: `${m.kld.mean.toPrecision(3)} ± ${m.kld.meanError.toPrecision(2)}` } : undefined)),
        column("kld_p99", "KLD p99", "lower", false, r.models, (m) => (m.kld ? { value: m.kld.p99, text: m.kld.p99.toPrecision(3) } : undefined)),
        column("same_top", "same top", "higher", true, r.models, (m) => (m.kld ? { value: m.kld.sameTop, text: `${pct(m.kld.sameTop)} ± ${pct(m.kld.sameTopError)} %` } : undefined)),
      );
    }
  }
  if (r.tasks.length > 0) {
    columns.push(
      column("questions_per_s", "questions/s", "higher", false, r.models, (m) => {
        const n = m.tasks.reduce((a, t) => a + t.score.questions, 0);
        const s = m.tasks.reduce((a, t) => a + t.score.seconds, 0);
        return s > 0 ? { value: n / s, text: (n / s).toFixed(1) } : undefined;
      }),
    );
  }
  return { models: r.models.map((m) => m.label), columns };
}

/** The plain-text table for the terminal: the best of each column marked with "*". */
export function textTable(t: ComparisonTable): string {
  const headers = ["MODEL", ...t.columns.map((c) => `${c.label.toUpperCase()} ${c.better === "higher" ? "↑" : "↓"}`)];
  const rows = t.models.map((name, i) => [name, ...t.columns.map((c) => (c.cells[i] ? `${c.cells[i]!.text}${c.best.includes(i) ? " *" : ""}` : "–"))]);
  const marked = t.columns.some((c) => c.best.length > 0);
  const shares = t.columns.some((c) => c.cells.some((x) => x?.low !== undefined));
  const notes = [marked ? "* best in its column" : "", shares ? "accuracies with their 95 % Wilson interval" : ""].filter(Boolean);
  return [table(headers, rows), ...(notes.length > 0 ? [notes.join("; ")] : [])].join("\n");
}
