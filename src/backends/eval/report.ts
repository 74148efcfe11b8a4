import path from "node:path";
import { UsageError } from "../../core/errors.js";
import type { EvalResult } from "./evaluate.js";
import { type Column, type ComparisonTable, comparisonTable } from "./table.js";
import { fileWriteError } from "../../core/writeError.js";

/**
 * Shareable reports of an eval run: Markdown (the table, the tasks with their sha256, the settings) or
 * one self-contained HTML file (the same, plus an inline SVG bar chart per metric; no scripts, styles
 * or fonts from elsewhere, so it opens offline and in a mail attachment).
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
  return r.models.map((m) => `${m.label}: ${m.path}${m.adapters.length ? ` with ${m.adapters.map((a) => `${a.path} ×${a.scale}`).join(", ")}` : ""}; ${m.threads ? `${m.threads} threads, ` : ""}${m.tasks.length ? `${m.parallel} sequences, ` : ""}${m.seconds.toFixed(1)} s${m.stored ? "" : ` (not stored: ${m.notStored})`}`);
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

/** A horizontal bar chart of one column: one bar per model, the 95 % interval as a whisker, the best in a darker colour. */
function barChart(c: Column, models: string[]): string {
  const rowH = 26;
  const labelW = 220;
  const barW = 360;
  const h = models.length * rowH + 30;
  const max = c.share ? 1 : Math.max(...c.cells.map((x) => x?.high ?? x?.value ?? 0), 1e-9);
  const x = (v: number) => labelW + (Math.max(0, v) / max) * barW;
  const parts = models.map((name, i) => {
    const cell = c.cells[i];
    const y = 10 + i * rowH;
    const label = `<text x="${labelW - 8}" y="${y + 15}" text-anchor="end">${esc(name.length > 32 ? `${name.slice(0, 31)}…` : name)}</text>`;
    if (!cell) return `${label}<text x="${labelW + 4}" y="${y + 15}">–</text>`;
    const bar = `<rect x="${labelW}" y="${y + 3}" width="${(x(cell.value) - labelW).toFixed(1)}" height="${rowH - 10}" class="${c.best.includes(i) ? "best" : "bar"}"/>`;
    const whisker = cell.low !== undefined && cell.high !== undefined ? `<line x1="${x(cell.low).toFixed(1)}" x2="${x(cell.high).toFixed(1)}" y1="${y + 11}" y2="${y + 11}" class="ci"/>` : "";
    return `${label}${bar}${whisker}<text x="${(x(cell.high ?? cell.value) + 6).toFixed(1)}" y="${y + 15}">${esc(cell.text.split(" (")[0]!)}</text>`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${labelW + barW + 140}" height="${h}" role="img" aria-label="${esc(c.label)}">${parts.join("")}</svg>`;
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
table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #ccc;padding:.35em .7em;text-align:right}
th[scope=row],tr:first-child th{text-align:left;background:#f4f4f4}
td.best{font-weight:bold;background:#e6f4e6}
figure{margin:1.5em 0}
figcaption{font-weight:bold;margin-bottom:.3em}
svg text{font-size:13px;fill:#222}
svg .bar{fill:#9bbbd9}
svg .best{fill:#2f7d32}
svg .ci{stroke:#222;stroke-width:1.5}
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
