import { describe, expect, it } from "vitest";
import type { EvalResult, ModelResult } from "../../src/backends/eval/evaluate.js";
import { wilson } from "../../src/backends/eval/match.js";
import { htmlReport, markdownReport, reportFormat } from "../../src/backends/eval/report.js";
import { comparisonTable, textTable } from "../../src/backends/eval/table.js";

function model(label: string, correct: number, acc: number, qps: number): ModelResult {
  return {
    label,
    model: label,
    path: `/models/${label}.gguf`,
    adapters: [],
    stored: label !== "b",
    notStored: label === "b" ? "b.gguf is a file, not a registered model" : undefined,
    threads: 1,
    parallel: 8,
    seconds: 3,
    tasks: [
      { task: "qa", file: "/t/qa.jsonl", sha256: "a".repeat(64), score: { kind: "generate", accuracy: wilson(correct, 100), match: "exact", questions: 100, generatedTokens: 300, seconds: 100 / qps, questionsPerSecond: qps, samples: [{ line: 3, output: "wrong <b>", correct: false, stopReason: "eogToken" }] } },
      { task: "mc", file: "/t/mc.jsonl", sha256: "b".repeat(64), score: { kind: "choice", acc: wilson(acc, 50), accNorm: wilson(acc, 50), questions: 50, seconds: 1, questionsPerSecond: 50, samples: [] } },
    ],
  };
}

const result: EvalResult = {
  models: [model("a", 90, 40, 100), model("b", 95, 40, 50), model("c <x>", 60, 10, 20)],
  tasks: [
    { name: "qa", file: "/t/qa.jsonl", sha256: "a".repeat(64), kind: "generate", questions: 100, total: 120 },
    { name: "mc", file: "/t/mc.jsonl", sha256: "b".repeat(64), kind: "choice", questions: 50, total: 50 },
  ],
  settings: { match: "exact", maxTokens: 256, temperature: 0 },
  date: "2026-11-26T09:00:00.000Z",
};

/** Checks that every element opened is closed in order (void elements aside): "well-formed enough to open". */
function balanced(html: string): boolean {
  const voids = new Set(["meta", "br", "hr", "img", "input", "link", "rect", "line", "!doctype"]);
  const stack: string[] = [];
  for (const m of html.matchAll(/<(\/?)([!a-zA-Z][a-zA-Z0-9]*)[^>]*?(\/?)>/g)) {
    const [, close, raw, self] = m;
    const tag = raw!.toLowerCase();
    if (self || voids.has(tag)) continue;
    if (close) {
      if (stack.pop() !== tag) return false;
    } else stack.push(tag);
  }
  return stack.length === 0;
}

describe("comparison table", () => {
  it("has a column per metric and marks the best of each (ties all marked)", () => {
    const t = comparisonTable(result);
    expect(t.columns.map((c) => c.label)).toEqual(["qa", "mc acc", "mc acc_norm", "questions/s"]);
    expect(t.columns[0]!.best).toEqual([1]);
    expect(t.columns[1]!.best).toEqual([0, 1]);
    expect(t.columns[3]!.best).toEqual([0]);
    const text = textTable(t);
    expect(text.split("\n")[0]).toMatch(/^MODEL\s+QA ↑\s+MC ACC ↑/);
    expect(text).toMatch(/^b\s+95\.0 % \(88\.8–97\.8\) \*/m);
    expect(text).toMatch(/^a\s+90\.0 % \([\d.]+–[\d.]+\)\s/m);
    expect(text).toContain("* best in its column");
  });

  it("marks nothing with a single model", () => {
    const one = comparisonTable({ ...result, models: [result.models[0]!] });
    expect(one.columns.every((c) => c.best.length === 0)).toBe(true);
    expect(textTable(one)).not.toContain("*");
  });
});

describe("reports", () => {
  it("knows its formats by extension", () => {
    expect(reportFormat("x.md")).toBe("md");
    expect(reportFormat("x.HTML")).toBe("html");
    expect(reportFormat("x.pdf")).toBeUndefined();
  });

  it("Markdown: a table with a row per model, the best in bold, tasks with their sha256, why a model was not stored", () => {
    const md = markdownReport(result);
    const rows = md.split("\n").filter((l) => l.startsWith("|"));
    expect(rows).toHaveLength(2 + 3);
    expect(rows[0]).toBe("| model | qa ↑ | mc acc ↑ | mc acc_norm ↑ | questions/s ↑ |");
    expect(rows.filter((r) => !r.startsWith("|---")).every((r) => r.split(" | ").length === 5)).toBe(true);
    expect(rows[3]).toContain("**95.0 % (88.8–97.8)**");
    expect(md).toContain("qa — generation, 100 of 120 questions, /t/qa.jsonl (sha256 aaaaaaaaaaaaaaaa…)");
    expect(md).toContain("not stored: b.gguf is a file");
    expect(md).toContain('line 3 → "wrong <b>"');
  });

  it("HTML: one self-contained, balanced document with the table and a chart per column (SVG bars), text escaped", () => {
    const html = htmlReport(result);
    expect(html.startsWith("<!DOCTYPE html>")).toBe(true);
    expect(balanced(html)).toBe(true);
    expect(html.match(/<div class="chart"/g)).toHaveLength(4);
    expect(html.match(/<svg /g)).toHaveLength(12);
    expect(html.match(/<tr>/g)).toHaveLength(4);
    expect(html).toContain("c &lt;x&gt;");
    expect(html).not.toContain("c <x>");
    expect(html).toContain('<td class="best">95.0 % (88.8–97.8)</td>');
    // Nothing fetched from elsewhere: no scripts, no external stylesheets, images or fonts.
    expect(html).not.toMatch(/<script|<link|src=|url\(|@import/i);
    expect(html.replace(/xmlns="http:\/\/www\.w3\.org\/2000\/svg"/g, "")).not.toContain("http");
  });
});
