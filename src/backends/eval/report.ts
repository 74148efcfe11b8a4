import path from "node:path";
import { UsageError } from "../../core/errors.js";
import type { EvalResult } from "./evaluate.js";
import { type Column, type ComparisonTable, comparisonTable } from "./table.js";
import { fileWriteError } from "../../core/storage.js";
import { countOf } from "../../core/format.js";

/**
 * Shareable reports of an eval run: Markdown (the table, the tasks with their sha256, the settings) or
 * one self-contained HTML file (the same, plus a bar chart per metric with inline SVG bars; no scripts,
 * styles or fonts from elsewhere, so it opens offline and in a mail attachment). Long model names and
 * numbers wrap rather than being cut off.
 */
export type ReportFormat = "md" | "html";

/** What another command's report (e.g. quantize --sweep) adds: its own title, and notes under the table. */
export interface ReportExtra {
  title?: string;
  notes?: string[];
}

export function reportFormat(file: string): ReportFormat | undefined {
  const ext = path.extname(file).toLowerCase();
  return ext === ".md" || ext === ".markdown" ? "md" : ext === ".html" || ext === ".htm" ? "html" : undefined;
}

const mdEscape = (s: string) => s.replace(/\|/g, "\\|");

function taskLines(r: EvalResult): string[] {
  return r.tasks.map((t) => `${t.name} — ${t.kind === "generate" ? "generation" : "multiple choice"}, ${t.questions}${t.questions < t.total ? ` of ${t.total}` : ""} questions, ${t.file} (sha256 ${t.sha256.slice(0, 16)}…)`);
}

function modelLines(r: EvalResult): string[] {
  return r.models.map((m) => `${m.label}: ${m.path}${m.adapters.length ? ` with ${m.adapters.map((a) => `${a.path} ×${a.scale}`).join(", ")}` : ""}; ${m.threads ? `${countOf(m.threads, "thread")}, ` : ""}${m.tasks.length ? `${countOf(m.parallel, "sequence")}, ` : ""}${m.seconds.toFixed(1)} s${m.stored ? "" : ` (not stored: ${m.notStored})`}`);
}

function settingsLine(r: EvalResult): string {
  return Object.entries(r.settings).map(([k, v]) => `${k} ${v}`).join(", ");
}

function textLines(r: EvalResult): string[] {
  const t = r.text;
  if (!t) return [];
  return [`${t.name} — ${t.kldBase ? `perplexity and KL divergence from ${t.kldBase}` : "perplexity"} in chunks of ${t.ctx} tokens (second halves scored, as llama-perplexity), ${t.file} (sha256 ${t.sha256.slice(0, 16)}…)`];
}

export function markdownReport(r: EvalResult, t: ComparisonTable = comparisonTable(r), extra: ReportExtra = {}): string {
  const head = `| model | ${t.columns.map((c) => `${mdEscape(c.label)} ${c.better === "higher" ? "↑" : "↓"}`).join(" | ")} |`;
  const rule = `|---|${t.columns.map(() => "---:").join("|")}|`;
  const rows = t.models.map((name, i) => `| ${mdEscape(name)} | ${t.columns.map((c) => (c.cells[i] ? (c.best.includes(i) ? `**${c.cells[i]!.text}**` : c.cells[i]!.text) : "–")).join(" | ")} |`);
  const misses = r.models.flatMap((m) =>
    m.tasks.flatMap((tr) => {
      if (tr.score.kind !== "generate") return [];
      const wrong = tr.score.samples.filter((s) => !s.correct).slice(0, 5);
      return wrong.length ? [`- ${mdEscape(m.label)}, ${tr.task}: ${wrong.map((s) => `line ${s.line} → ${JSON.stringify(s.output.slice(0, 80))}`).join("; ")}`] : [];
    }),
  );
  return [
    `# ${extra.title ?? "slm eval"} — ${r.date.slice(0, 10)}`,
    "",
    head,
    rule,
    ...rows,
    "",
    ...(extra.notes ?? []).flatMap((n) => [n, ""]),
    "Accuracies are shares of questions answered right, with their 95 % Wilson interval; **bold** is the best of its column.",
    "",
    "## Tasks",
    "",
    ...[...taskLines(r), ...textLines(r)].map((l) => `- ${l}`),
    "",
    "## Models",
    "",
    ...modelLines(r).map((l) => `- ${l}`),
    "",
    `Settings: ${settingsLine(r)}.`,
    ...(misses.length ? ["", "## First wrong answers", "", ...misses] : []),
    "",
  ].join("\n");
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/**
 * A horizontal bar chart of one column: one row per model, the 95 % interval as a whisker, the best in a
 * darker colour. Names and values are HTML text in a grid (they wrap, however long, instead of being cut
 * at an SVG's edge); only the bars are SVG, scaled to their cell.
 */
function barChart(c: Column, models: string[]): string {
  const max = c.share ? 1 : Math.max(...c.cells.map((x) => x?.high ?? x?.value ?? 0), 1e-9);
  const pct = (v: number) => ((Math.max(0, v) / max) * 100).toFixed(2);
  const rows = models.map((name, i) => {
    const cell = c.cells[i];
    const label = `<div class="name">${esc(name)}</div>`;
    if (!cell) return `${label}<div class="track"></div><div class="value">–</div>`;
    const whisker = cell.low !== undefined && cell.high !== undefined ? `<line x1="${pct(cell.low)}" x2="${pct(cell.high)}" y1="5" y2="5" class="ci"/>` : "";
    const bars = `<svg viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true"><rect x="0" y="1" width="${pct(cell.value)}" height="8" class="${c.best.includes(i) ? "best" : "bar"}"/>${whisker}</svg>`;
    return `${label}<div class="track">${bars}</div><div class="value">${esc(cell.text.split(" (")[0]!)}</div>`;
  });
  return `<div class="chart" role="img" aria-label="${esc(c.label)}">${rows.join("")}</div>`;
}

export function htmlReport(r: EvalResult, t: ComparisonTable = comparisonTable(r), extra: ReportExtra = {}): string {
  const title = `${esc(extra.title ?? "slm eval")} — ${esc(r.date.slice(0, 10))}`;
  const head = `<tr><th>model</th>${t.columns.map((c) => `<th>${esc(c.label)} ${c.better === "higher" ? "↑" : "↓"}</th>`).join("")}</tr>`;
  const rows = t.models.map((name, i) => `<tr><th scope="row">${esc(name)}</th>${t.columns.map((c) => `<td${c.best.includes(i) ? ' class="best"' : ""}>${c.cells[i] ? esc(c.cells[i]!.text) : "–"}</td>`).join("")}</tr>`);
  const charts = t.columns.map((c) => `<figure><figcaption>${esc(c.label)} (${c.better} is better)</figcaption>${barChart(c, t.models)}</figure>`);
  const list = (items: string[]) => `<ul>${items.map((l) => `<li>${esc(l)}</li>`).join("")}</ul>`;
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${title}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:70em}
table{border-collapse:collapse;margin:1em 0;max-width:100%}
th,td{border:1px solid #ccc;padding:.35em .7em;text-align:right;overflow-wrap:anywhere}
th[scope=row],tr:first-child th{text-align:left;background:#f4f4f4}
td.best{font-weight:bold;background:#e6f4e6}
figure{margin:1.5em 0}
figcaption{font-weight:bold;margin-bottom:.3em}
.chart{display:grid;grid-template-columns:minmax(6em,max-content) minmax(12em,1fr) max-content;gap:.3em .6em;align-items:center;max-width:60em;font-size:13px}
.chart .name{text-align:right;overflow-wrap:anywhere;max-width:28em}
.chart .track svg{display:block;width:100%;height:1.3em}
.chart .value{white-space:nowrap}
svg .bar{fill:#9bbbd9}
svg .best{fill:#2f7d32}
svg .ci{stroke:#222;stroke-width:1.5;vector-effect:non-scaling-stroke}
p,li{overflow-wrap:anywhere}
</style>
</head>
<body>
<h1>${title}</h1>
<table>
${head}
${rows.join("\n")}
</table>
${(extra.notes ?? []).map((n) => `<p>${esc(n)}</p>`).join("\n")}
<p>Accuracies are shares of questions answered right, with their 95 % Wilson interval (whiskers in the charts); the best of each column is highlighted.</p>
${charts.join("\n")}
<h2>Tasks</h2>
${list([...taskLines(r), ...textLines(r)])}
<h2>Models</h2>
${list(modelLines(r))}
<p>Settings: ${esc(settingsLine(r))}.</p>
</body>
</html>
`;
}

export function renderReport(r: EvalResult, format: ReportFormat, t: ComparisonTable = comparisonTable(r), extra: ReportExtra = {}): string {
  return format === "md" ? markdownReport(r, t, extra) : htmlReport(r, t, extra);
}

/** Writes the report next to its final name and renames it into place, so a failure leaves no half file. */
export async function writeReport(r: EvalResult, file: string, t?: ComparisonTable, extra?: ReportExtra): Promise<{ path: string; format: ReportFormat }> {
  const format = reportFormat(file);
  if (!format) throw new UsageError(`--report takes a .md or .html file name (got ${file}).`);
  const abs = path.resolve(file);
  const { default: writeFileAtomic } = await import("write-file-atomic");
  try {
    await writeFileAtomic(abs, renderReport(r, format, t, extra));
  } catch (err) {
    throw fileWriteError(abs, err);
  }
  return { path: abs, format };
}
