import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import type { EvalResult, ModelResult } from "../../src/backends/eval/evaluate.js";
import { wilson } from "../../src/backends/eval/match.js";
import { htmlReport, writeReport } from "../../src/backends/eval/report.js";
import type { SweepResult, SweepRow } from "../../src/backends/quantize/sweep.js";
import { writeSweepReport } from "../../src/backends/quantize/sweepTable.js";

/**
 * The HTML reports laid out by a real browser at 1280 px: headless Chromium (`.ci/run` installs it from
 * Debian where it can) loads a copy of each report with a measuring script added, and writes what it
 * measured into the DOM it dumps. Nothing may be cut off: the page no wider than the window, and no
 * text wider than the box that holds it (a long model name, a long number).
 */
const chromium = ["chromium", "chromium-browser", "google-chrome"].find((b) => {
  try {
    execFileSync(b, ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
});

const MEASURE = `<script>
addEventListener("load", () => {
  const width = innerWidth;
  const cut = [];
  for (const el of document.querySelectorAll("h1, p, li, th, td, figcaption, .chart > div")) {
    const r = el.getBoundingClientRect();
    if (el.scrollWidth > el.clientWidth + 1 || r.right > width + 0.5 || r.left < -0.5) cut.push(el.tagName + "." + el.className + ": " + el.textContent.slice(0, 80));
  }
  // Text drawn in an SVG is cut at the SVG's edge.
  for (const t of document.querySelectorAll("svg text")) {
    const b = t.getBBox();
    const svg = t.ownerSVGElement.getBBox ? t.ownerSVGElement.getBoundingClientRect() : null;
    if (b.x < 0 || (svg && b.x + b.width > svg.width)) cut.push("svg text: " + t.textContent.slice(0, 80));
  }
  const out = document.createElement("pre");
  out.id = "layout";
  out.textContent = JSON.stringify({ width, pageWidth: document.documentElement.scrollWidth, cut, charts: document.querySelectorAll("figure").length });
  document.body.append(out);
});
</script>`;

interface Layout {
  width: number;
  pageWidth: number;
  cut: string[];
  charts: number;
}

function layoutAt(file: string, width: number): Layout {
  const probe = file.replace(/\.html$/, ".probe.html");
  writeFileSync(probe, readFileSync(file, "utf8").replace("</body>", `${MEASURE}</body>`));
  const dom = execFileSync(chromium!, ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", `--window-size=${width},900`, "--virtual-time-budget=2000", "--dump-dom", `file://${probe}`], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 60_000 });
  const m = /<pre id="layout">(.*?)<\/pre>/s.exec(dom);
  if (!m) throw new Error(`no layout in the dumped page:\n${dom.slice(0, 500)}`);
  return JSON.parse(m[1]!.replace(/&quot;/g, '"').replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&")) as Layout;
}

// Names as users have them: org/repo:quant references and long file names.
const NAMES = [
  "bartowski/Meta-Llama-3.1-8B-Instruct-abliterated-uncensored-GGUF:Q4_K_M",
  "/home/someone/models/DeepSeek-R1-Distill-Qwen-14B-Uncensored-Reasoner-v2.Q5_K_M.gguf",
  "unsloth/Qwen3-30B-A3B-Instruct-2507-GGUF:UD-Q4_K_XL",
];

function model(label: string, i: number): ModelResult {
  return {
    label,
    model: label,
    path: `/models/${label}.gguf`,
    adapters: [],
    stored: true,
    parallel: 8,
    seconds: 3,
    tasks: [
      { task: "grade-school-math-word-problems-hard", file: "/t/gsm.jsonl", sha256: "a".repeat(64), score: { kind: "generate", accuracy: wilson(1234 - i * 100, 1319), match: "exact", questions: 1319, generatedTokens: 300_000, seconds: 1000, questionsPerSecond: 1.3191234 } },
      { task: "multiple-choice-science-questions", file: "/t/mc.jsonl", sha256: "b".repeat(64), score: { kind: "choice", acc: wilson(9000 - i, 11_000), accNorm: wilson(9100 - i, 11_000), questions: 11_000, seconds: 1, questionsPerSecond: 12_345.678, samples: [] } },
    ],
  } as ModelResult;
}

const evalResult: EvalResult = {
  models: NAMES.map(model),
  tasks: [
    { name: "grade-school-math-word-problems-hard", file: "/t/gsm.jsonl", sha256: "a".repeat(64), kind: "generate", questions: 1319, total: 1319 },
    { name: "multiple-choice-science-questions", file: "/t/mc.jsonl", sha256: "b".repeat(64), kind: "choice", questions: 11_000, total: 11_000 },
  ],
  settings: { match: "exact", maxTokens: 256, temperature: 0 },
  date: "2026-12-07T09:00:00.000Z",
};

function kld(mean: number) {
  return { base: NAMES[0]!, mean, meanError: mean / 50, median: mean / 2, p99: mean * 9, max: mean * 40, sameTop: 1 - mean * 3, sameTopError: 0.0012, ppl: 12345.6789 + mean, pplError: 12.3456, basePpl: 12345.6789, basePplError: 12.3, tokens: 287_232, chunks: 561, ctxSize: 512, seconds: 1234 };
}

function sweepResult(): SweepResult {
  const base = model(NAMES[0]!, 0);
  const types = ["Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "IQ4_XS", "Q3_K_M", "IQ3_XXS", "Q2_K"];
  const rows: SweepRow[] = types.map((type, i) => ({
    name: `${NAMES[0]}-${type}`,
    path: `/models/x-${type}.gguf`,
    size: 8_540_000_000 - i * 700_000_000,
    bitsPerWeight: 8.5 - i * 0.8,
    genTokensPerSecond: 123.456 + i * 10,
    genStddev: 1.2,
    eval: { ...model(`${NAMES[0]}-${type}`, i), kld: kld(0.000123 * (i + 1) ** 3) },
    type,
    imatrix: true,
    pareto: i % 2 === 0,
    verdict: { kld: i < 4, tasks: i < 5, qualifies: i < 4 },
    removed: false,
    warnings: [],
  }));
  return {
    source: { name: NAMES[0]!, path: "/models/x.gguf", size: 16_060_000_000, bitsPerWeight: 16, genTokensPerSecond: 61.234, genStddev: 0.8, eval: { ...base, perplexity: { ppl: 12345.6789, pplError: 12.3, tokens: 287_232, chunks: 561, ctxSize: 512, seconds: 100 } } as SweepResult["source"]["eval"], fileType: "F16" },
    rows,
    recommended: "Q4_K_M",
    rule: { maxKld: 0.01, maxDrop: 0.01, sourceScores: { "grade-school-math-word-problems-hard": 0.93555 } },
    keep: "all",
    kept: types,
    removed: [],
    text: { name: "wiki.test.raw", file: "/data/wikitext-2-raw/wiki.test.raw", sha256: "c".repeat(64), ctx: 512, kldBase: NAMES[0], from: "--text" },
    tasks: evalResult.tasks,
    settings: evalResult.settings,
    generation: { tokens: 128, repetitions: 5 },
    date: evalResult.date,
    seconds: 4321,
  } as SweepResult;
}

describe.skipIf(!chromium)("HTML reports at 1280 px in Chromium: nothing cut off", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "slm-report-"));

  it("slm eval's report: long model names and numbers wrap inside the table and the charts", async () => {
    const file = path.join(dir, "eval.html");
    await writeReport(evalResult, file);
    const l = layoutAt(file, 1280);
    expect(l.charts).toBe(4);
    expect(l.cut).toEqual([]);
    expect(l.pageWidth).toBeLessThanOrEqual(1280);
  }, 90_000);

  it("slm quantize --sweep's report: nine rows and ten columns of long numbers", async () => {
    const file = path.join(dir, "sweep.html");
    await writeSweepReport(sweepResult(), file);
    const l = layoutAt(file, 1280);
    expect(l.charts).toBeGreaterThanOrEqual(8);
    expect(l.cut).toEqual([]);
    expect(l.pageWidth).toBeLessThanOrEqual(1280);
  }, 90_000);
});

describe("HTML reports without a browser", () => {
  it("keep every model name whole, as text that can wrap (never cut to fit a fixed-width drawing)", () => {
    const html = htmlReport(evalResult);
    for (const name of NAMES) {
      // The table's row and one row in each of the four charts.
      expect(html.split(`>${name}<`).length - 1, name).toBe(5);
    }
    expect(html).not.toMatch(/<svg[^>]*>(?:(?!<\/svg>).)*<text/s);
    expect(html).toMatch(/\.chart \.name\{[^}]*overflow-wrap:anywhere/);
  });
});
