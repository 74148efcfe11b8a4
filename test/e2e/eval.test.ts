import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { EvalResult } from "../../src/backends/eval/evaluate.js";
import type { ModelEntry, Registry } from "../../src/backends/store/types.js";
import { FIXTURE, type Sandbox, lastJson, register, sandbox, slm } from "../helpers/cli.js";

const DATA = path.join(FIXTURE, "data");
const ADD = path.join(DATA, "add-eval.jsonl");
const SUB = path.join(DATA, "sub-eval.jsonl");
// 200 multiple-choice questions made from the first 200 of add-eval: the right sum and three near
// misses (±1, ±2, ±10, +11, −9), the right one at a random place (answer indexes 45/52/47/56 times).
const CHOICE = path.join(DATA, "add-choice.jsonl");
const F32 = path.join(FIXTURE, "gguf", "tiny-arith-f32.gguf");
const LORA = path.join(FIXTURE, "gguf", "lora-sub-f32.gguf");
const PEFT = path.join(FIXTURE, "lora-sub");
const SLOW = 180_000;


function registry(sb: Sandbox): Registry {
  return JSON.parse(readFileSync(path.join(sb.home, "registry.json"), "utf8")) as Registry;
}

async function evalJson(args: string[], sb: Sandbox): Promise<EvalResult> {
  const r = await slm(["eval", ...args, "--json"], sb);
  expect(r.exitCode, r.all).toBe(0);
  const last = lastJson(r.stdout);
  expect(last.type).toBe("result");
  return last.data as EvalResult;
}

function accuracy(r: EvalResult, model: number, task = 0): number {
  const s = r.models[model]!.tasks[task]!.score;
  if (s.kind !== "generate") throw new Error("not a generation task");
  return s.accuracy.value;
}

describe("slm eval: scores", () => {
  const sb = sandbox();

  it(
    "tiny-arith (F16) adds: ≥ 95 % exact match on all 500 of add-eval, with a Wilson interval; stored with the built-in model",
    async () => {
      const r = await evalJson(["tiny-arith", "--task", ADD], sb);
      const s = r.models[0]!.tasks[0]!.score;
      if (s.kind !== "generate") throw new Error("kind");
      expect(s.questions).toBe(500);
      expect(s.accuracy.value).toBeGreaterThanOrEqual(0.95);
      expect(s.accuracy.low).toBeLessThan(s.accuracy.value);
      expect(s.accuracy.high).toBeGreaterThanOrEqual(s.accuracy.value);
      expect(s.samples.filter((x) => x.correct)).toHaveLength(Math.round(s.accuracy.value * 500));
      expect(r.models[0]).toMatchObject({ model: "tiny-arith", stored: true, parallel: 8 });
      const stored = registry(sb).builtinEvals?.["tiny-arith"];
      expect(stored).toHaveLength(1);
      expect(stored![0]).toMatchObject({ kind: "generate", name: "add-eval", file: ADD, n: 500, settings: { match: "exact", maxTokens: 256, temperature: 0 } });
      expect(stored![0]!.sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(stored![0]!.metrics.accuracy).toBe(s.accuracy.value);
    },
    SLOW,
  );

  it(
    "the LoRA adapter subtracts (≥ 95 % on sub-eval) where the base does not (≤ 10 %), compared in one run",
    async () => {
      // The adapter as a GGUF file, and as the PEFT folder it was converted from (converted on the fly).
      const r = await evalJson(["tiny-arith", `tiny-arith+${LORA}`, `tiny-arith+${PEFT}`, "--task", SUB, "--limit", "200"], sb);
      expect(r.models.map((m) => m.label)).toEqual(["tiny-arith", "tiny-arith + lora-sub-f32.gguf", "tiny-arith + lora-sub"]);
      expect(accuracy(r, 0)).toBeLessThanOrEqual(0.1);
      expect(accuracy(r, 1)).toBeGreaterThanOrEqual(0.95);
      expect(accuracy(r, 2)).toBeGreaterThanOrEqual(0.95);
      expect(r.models[1]).toMatchObject({ stored: false, adapters: [{ path: LORA, scale: 1 }] });
      expect(r.models[1]!.notStored).toBe("tiny-arith + lora-sub-f32.gguf has adapters that the registered tiny-arith has not");
      // --lora puts the adapter on every model.
      const all = await evalJson(["tiny-arith", "--lora", LORA, "--task", SUB, "--limit", "50"], sb);
      expect(accuracy(all, 0)).toBeGreaterThanOrEqual(0.95);
    },
    SLOW,
  );

  it(
    "multiple choice by log-likelihood scores far above chance (25 %), acc and acc_norm with intervals",
    async () => {
      const r = await evalJson(["tiny-arith", "--task", CHOICE], sb);
      const s = r.models[0]!.tasks[0]!.score;
      if (s.kind !== "choice") throw new Error("kind");
      expect(s.questions).toBe(200);
      expect(s.acc.value).toBeGreaterThanOrEqual(0.8);
      expect(s.acc.low).toBeGreaterThan(0.25);
      expect(s.accNorm.value).toBeGreaterThanOrEqual(0.7);
      // Each sample carries one finite log-likelihood (≤ 0) per choice.
      for (const x of s.samples) {
        expect(x.logLikelihoods).toHaveLength(4);
        for (const ll of x.logLikelihoods) expect(ll).toBeLessThanOrEqual(0);
      }
    },
    SLOW,
  );

  it(
    "a registered base + adapter model is evaluated with its adapter and stores its results",
    async () => {
      register(sb, [{ name: "arith-sub", path: F32, adapters: [{ path: LORA, scale: 1 }] }]);
      const r = await evalJson(["arith-sub", "--task", SUB, "--limit", "50"], sb);
      expect(accuracy(r, 0)).toBeGreaterThanOrEqual(0.95);
      expect(r.models[0]!.stored).toBe(true);
      expect(registry(sb).models["arith-sub"]!.evals).toHaveLength(1);
    },
    SLOW,
  );

  it(
    "sampling flags apply: a high temperature with a seed is repeatable and worse than greedy",
    async () => {
      const args = ["tiny-arith", "--task", ADD, "--limit", "100", "-t", "3", "--top-k", "0", "--top-p", "1", "--min-p", "0", "--seed", "5", "--no-store"];
      const a = await evalJson(args, sb);
      const b = await evalJson(args, sb);
      const outputs = (r: EvalResult) => (r.models[0]!.tasks[0]!.score as { samples: { output: string }[] }).samples.map((s) => s.output);
      expect(outputs(a)).toEqual(outputs(b));
      expect(accuracy(a, 0)).toBeLessThan(0.9);
    },
    SLOW,
  );
});

describe("slm eval: comparison, report, stored results", () => {
  const sb = sandbox();
  const out = mkdtempSync(path.join(tmpdir(), "slm-eval-report-"));

  beforeAll(() => register(sb, [{ name: "arith32", path: F32 }]));

  it(
    "compares two models in one table, writes Markdown and HTML reports, and info/list show the stored scores",
    async () => {
      const md = path.join(out, "r.md");
      const r = await slm(["eval", "tiny-arith", "arith32", "--task", ADD, "--task", CHOICE, "--limit", "60", "--report", md], sb);
      expect(r.exitCode, r.all).toBe(0);
      // Plain progress (not a terminal) counts what it counts: questions, not "steps".
      expect(r.stderr).toMatch(/: 100% {2}60\/60 questions/);
      expect(r.stderr).not.toMatch(/\bsteps\b/);
      const lines = r.stdout.split("\n");
      expect(lines[0]).toMatch(/^MODEL\s+ADD-EVAL ↑\s+ADD-CHOICE ACC ↑\s+ADD-CHOICE ACC_NORM ↑\s+QUESTIONS\/S ↑/);
      expect(lines.filter((l) => /^(tiny-arith|arith32)\s+\d/.test(l))).toHaveLength(2);
      expect(r.stdout).toContain("* best in its column");
      expect(r.stdout).toContain("Saved with tiny-arith, arith32");
      expect(r.stdout).toContain(`Report: ${md}`);
      const text = readFileSync(md, "utf8");
      expect(text.split("\n").filter((l) => /^\| (tiny-arith|arith32) \|/.test(l))).toHaveLength(2);
      expect(text).toContain("add-choice — multiple choice, 60 of 200 questions");

      const html = path.join(out, "r.html");
      const h = await slm(["eval", "tiny-arith", "arith32", "--task", ADD, "--limit", "20", "--report", html, "--no-store"], sb);
      expect(h.exitCode, h.all).toBe(0);
      const page = readFileSync(html, "utf8");
      expect(page.startsWith("<!DOCTYPE html>")).toBe(true);
      expect(page.trimEnd().endsWith("</html>")).toBe(true);
      expect(page.match(/<div class="chart"/g)).toHaveLength(2);
      expect(page).toContain("<th scope=\"row\">arith32</th>");

      const info = await slm(["info", "arith32"], sb);
      expect(info.stdout).toMatch(/evals \(slm eval\)\n {2}add-eval: [\d.]+ % exact match \(95 % CI [\d.]+ %–[\d.]+ %\), 60 questions, first 60/);
      expect(info.stdout).toMatch(/add-choice: acc [\d.]+ %/);
      const list = await slm(["list", "--metrics"], sb);
      expect(list.exitCode, list.all).toBe(0);
      expect(list.stdout.split("\n")[0]).toMatch(/ADD-CHOICE\s+ADD-EVAL$/);
      expect(list.stdout).toMatch(/^arith32 .* [\d.]+ % acc\s+[\d.]+ %$/m);
      expect(list.stdout).toMatch(/^tiny-arith .* [\d.]+ % acc\s+[\d.]+ %$/m);
    },
    SLOW,
  );

  it(
    "--perplexity and --kld-base: perplexity, KL divergence from the base (zero for the base itself), stored per model",
    async () => {
      // ~1,800 tokens of arithmetic as plain text: enough for several chunks of 128.
      const text = path.join(out, "arith.txt");
      const lines = readFileSync(ADD, "utf8").trim().split("\n").slice(0, 200);
      writeFileSync(text, lines.map((l) => (JSON.parse(l) as { messages: { content: string }[] }).messages.map((m) => m.content).join("=")).join("\n") + "\n");
      const ppl = await evalJson(["tiny-arith", "--perplexity", text, "--ctx", "128"], sb);
      const p = ppl.models[0]!.perplexity!;
      expect(p.ppl).toBeGreaterThan(1);
      expect(p.chunks).toBeGreaterThanOrEqual(4);
      expect(ppl.text).toMatchObject({ name: "arith", ctx: 128 });

      const r = await evalJson(["tiny-arith", "arith32", "--perplexity", text, "--kld-base", "arith32", "--ctx", "128"], sb);
      const [f16, f32] = r.models.map((m) => m.kld!);
      expect(f32).toMatchObject({ mean: 0, max: 0, sameTop: 1, base: "arith32" });
      expect(f16!.mean).toBeGreaterThan(0);
      expect(f16!.mean).toBeLessThan(1e-3);
      // The same chunks give the same perplexity whichever way it is asked for.
      expect(Math.abs(f16!.ppl - p.ppl) / p.ppl).toBeLessThan(1e-9);
      const stored = registry(sb).builtinEvals!["tiny-arith"]!.filter((e) => e.file === text);
      expect(stored.map((e) => `${e.kind}:${e.name}`).sort()).toEqual(["kld:kld arith", "perplexity:ppl arith"]);
      expect(stored.find((e) => e.kind === "kld")).toMatchObject({ settings: { ctx: 128, base: "arith32" }, metrics: { kld_mean: f16!.mean, same_top: f16!.sameTop } });
      // The perplexity record of the KLD run replaced the one of the plain run (same file, same settings).
      expect(stored.find((e) => e.kind === "perplexity")!.metrics.ppl).toBe(f16!.ppl);

      const t = await slm(["eval", "tiny-arith", `arith32+${LORA}`, "--perplexity", text, "--kld-base", "arith32", "--ctx", "128", "--no-store"], sb);
      expect(t.stdout.split("\n")[0]).toMatch(/^MODEL\s+PPL ARITH ↓\s+KLD MEAN ↓\s+KLD P99 ↓\s+SAME TOP ↑$/);
      // The steps name a model with an extra adapter as the table does, not as its bare base.
      expect(t.stderr).toContain("KL divergence of arith32 + lora-sub-f32.gguf from arith32");
      expect(t.stderr).toContain("Loaded arith32 + lora-sub-f32.gguf");
      const withAdapter = await slm(["eval", `tiny-arith+${LORA}`, "--perplexity", text, "--ctx", "128", "--no-store"], sb);
      expect(withAdapter.stderr).toContain("Perplexity of tiny-arith + lora-sub-f32.gguf");
      const bad = await slm(["eval", "tiny-arith", "--kld-base", "arith32"], sb);
      expect(bad.exitCode).toBe(2);
      expect(bad.stderr).toContain("--kld-base compares next-token distributions on a text");
    },
    SLOW,
  );

  it(
    "a model given as a file is scored but not stored, and says so",
    async () => {
      const r = await slm(["eval", F32, "--task", ADD, "--limit", "10"], sb);
      expect(r.exitCode, r.all).toBe(0);
      expect(r.stdout).toContain("Not saved: tiny-arith-f32.gguf is a file, not a registered model.");
    },
    SLOW,
  );
});

describe("slm eval: bad input", () => {
  const sb = sandbox();
  const dir = mkdtempSync(path.join(tmpdir(), "slm-eval-bad-"));

  it("malformed task lines are usage errors that name the file and line; nothing is stored", async () => {
    const bad = path.join(dir, "bad.jsonl");
    writeFileSync(bad, `${JSON.stringify({ prompt: "1+1", answer: "2" })}\n{"prompt": "2+2", "answer": }\n`);
    const r = await slm(["eval", "tiny-arith", "--task", bad], sb);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/error: bad\.jsonl line 2: bad JSON/);
    expect(r.stderr).not.toMatch(/\s+at /);
    expect(existsSync(path.join(sb.home, "registry.json"))).toBe(false);
    const j = await slm(["eval", "tiny-arith", "--task", bad, "--json"], sb);
    expect(lastJson(j.stdout).error).toMatchObject({ exitCode: 2 });
  });

  it("a question longer than the model's context is a usage error that names it", async () => {
    const long = path.join(dir, "long.jsonl");
    writeFileSync(long, `${JSON.stringify({ prompt: "1+1", answer: "2" })}\n${JSON.stringify({ prompt: "12+".repeat(200), answer: "0" })}\n`);
    const r = await slm(["eval", "tiny-arith", "--task", long], sb);
    expect(r.exitCode, r.all).toBe(2);
    expect(r.stderr).toMatch(/error: long line 2: the prompt takes \d+ tokens, the context holds 256/);
  });

  it("missing files and models are not found (3); no task, a bad --report name or --match are usage errors (2)", async () => {
    const missing = await slm(["eval", "tiny-arith", "--task", path.join(dir, "nope.jsonl")], sb);
    expect(missing.exitCode).toBe(3);
    expect(missing.stderr).toContain("Task file not found");
    expect((await slm(["eval", "no-such-model", "--task", ADD], sb)).exitCode).toBe(3);
    expect((await slm(["eval", "tiny-arith", `tiny-arith+${path.join(dir, "nope.gguf")}`, "--task", ADD], sb)).exitCode).toBe(3);
    const none = await slm(["eval", "tiny-arith"], sb);
    expect(none.exitCode).toBe(2);
    expect(none.stderr).toContain("Nothing to evaluate");
    const report = await slm(["eval", "tiny-arith", "--task", ADD, "--report", path.join(dir, "r.pdf")], sb);
    expect(report.exitCode).toBe(2);
    expect(report.stderr).toContain("--report takes a .md or .html file");
    expect((await slm(["eval", "tiny-arith", "--task", ADD, "--match", "fuzzy"], sb)).exitCode).toBe(2);
  });
});
