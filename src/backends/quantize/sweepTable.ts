import { formatBytes } from "../../core/format.js";
import type { EvalResult } from "../eval/evaluate.js";
import { type ReportExtra, writeReport } from "../eval/report.js";
import { type Cell, type Column, type ComparisonTable, bestOf, comparisonTable, textTable } from "../eval/table.js";
import type { SweepModel, SweepResult } from "./sweep.js";

/**
 * The sweep's table, built on the eval comparison table (so the terminal, Markdown and HTML outputs are
 * the eval's own): the source and one row per type; size, bits per weight and generation speed added to
 * the eval's KLD, same-top, perplexity and task columns; Pareto-optimal types marked ◆, the
 * recommended one ★.
 */

/** The sweep as one eval run: the source and every type, the KLD measured from the source. */
export function sweepEvalResult(r: SweepResult): EvalResult {
  return { models: [r.source.eval, ...r.rows.map((x) => x.eval)], tasks: r.tasks, text: { ...r.text, kldBase: r.source.eval.label }, settings: r.settings, date: r.date };
}

function column(key: string, label: string, better: "higher" | "lower", models: SweepModel[], cell: (m: SweepModel) => Cell | undefined): Column {
  const cells = models.map(cell);
  return { key, label, better, share: false, cells, best: bestOf(cells, better) };
}

export function sweepTable(r: SweepResult): ComparisonTable {
  const base = comparisonTable(sweepEvalResult(r));
  const all: SweepModel[] = [r.source, ...r.rows];
  const evalColumn = (key: string) => base.columns.filter((c) => c.key === key);
  const columns = [
    column("size", "size", "lower", all, (m) => ({ value: m.size, text: formatBytes(m.size) })),
    column("bpw", "bits/weight", "lower", all, (m) => (m.bitsPerWeight === undefined ? undefined : { value: m.bitsPerWeight, text: m.bitsPerWeight.toFixed(2) })),
    ...evalColumn("kld_mean"),
    ...evalColumn("same_top"),
    ...evalColumn("ppl"),
    column("gen_tokens_per_s", "gen tokens/s", "higher", all, (m) => ({ value: m.genTokensPerSecond, text: m.genTokensPerSecond.toFixed(1) })),
    ...base.columns.filter((c) => r.tasks.some((t) => c.key.startsWith(`${t.name}:`))),
  ];
  const models = [`${r.source.name} (source)`, ...r.rows.map((x) => `${x.type}${x.pareto ? " ◆" : ""}${x.type === r.recommended ? " ★" : ""}`)];
  return { models, columns };
}

const pct = (x: number) => `${(x * 100).toFixed(1)} %`;

/** The rule in words, as the notes and docs state it. */
function ruleText(r: SweepResult): string {
  const tasks = Object.keys(r.rule.sourceScores);
  const kld = `mean KLD under ${r.rule.maxKld}`;
  if (tasks.length === 0) return kld;
  return `${kld} or every task score within ${(r.rule.maxDrop * 100).toFixed(1)} points of the source's (${tasks.map((t) => `${t} ${pct(r.rule.sourceScores[t]!)}`).join(", ")})`;
}

/** Lines under the table: what was measured, the marks, the recommendation, what was kept. */
export function sweepNotes(r: SweepResult): string[] {
  const tasks = r.tasks.length > 0;
  const lines = [
    `KLD, same top token and perplexity from ${r.source.name} on ${r.text.file} (${r.text.from}), in chunks of ${r.text.ctx} tokens; gen tokens/s: ${r.generation.tokens} tokens × ${r.generation.repetitions} (llama-bench's tg test).`,
    `◆ Pareto-optimal: no other type is smaller with a lower KLD${tasks ? " and task scores as high" : ""}. ★ recommended: the smallest type with ${ruleText(r)}.`,
  ];
  const rec = r.rows.find((x) => x.type === r.recommended);
  if (rec) {
    const why = [rec.verdict.kld ? `mean KLD ${rec.eval.kld!.mean.toPrecision(3)} < ${r.rule.maxKld}` : "", rec.verdict.tasks ? `task scores within ${(r.rule.maxDrop * 100).toFixed(1)} points` : ""].filter(Boolean).join(", ");
    lines.push(`Recommended: ${rec.type} (${rec.name}, ${formatBytes(rec.size)}): ${why}.`);
  } else {
    lines.push(`No type met the rule: ${r.rows.map((x) => `${x.type} KLD ${x.eval.kld!.mean.toPrecision(3)}`).join(", ")}.`);
  }
  const noImatrix = r.rows.filter((x) => !x.imatrix && x.warnings.some((w) => /importance matrix/.test(w))).map((x) => x.type);
  if (noImatrix.length > 0) lines.push(`Made without an importance matrix: ${noImatrix.join(", ")} (add --calibration FILE for better low-bit types).`);
  const reused = r.rows.filter((x) => x.reused).map((x) => x.name);
  if (reused.length > 0) lines.push(`Measured as made before by slm quantize with the same settings (not made again, never removed by --keep): ${reused.join(", ")}.`);
  if (r.removed.length > 0) lines.push(`Kept ${r.kept.join(", ")}; removed ${r.removed.join(", ")} (--keep best).`);
  else lines.push(`Registered: ${r.kept.join(", ")}.`);
  return lines;
}

export function sweepText(r: SweepResult, report?: string): string {
  return [textTable(sweepTable(r)), ...sweepNotes(r), ...(report ? [`Report: ${report}`] : [])].join("\n");
}

export function writeSweepReport(r: SweepResult, file: string): ReturnType<typeof writeReport> {
  const extra: ReportExtra = { title: `slm quantize --sweep ${r.source.name}`, notes: sweepNotes(r) };
  return writeReport(sweepEvalResult(r), file, sweepTable(r), extra);
}
