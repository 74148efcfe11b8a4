import { existsSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it, type TestContext } from "vitest";
import { readGgufSummary } from "../../src/backends/gguf/summary.js";
import type { Registry } from "../../src/backends/store/types.js";
import { FIXTURE, type Sandbox, lastJson, sandbox, slm } from "../helpers/cli.js";
import { writeFakeQuantize } from "../helpers/fakeQuantize.js";
import { llamaCppToolsForTests } from "../helpers/llamaCppTools.js";

const F32 = path.join(FIXTURE, "gguf", "tiny-arith-f32.gguf");
const TEXT = path.join(FIXTURE, "data", "eval-text.txt");
const TASK = path.join(FIXTURE, "data", "add-eval.jsonl");
const BUILD_TIMEOUT = 45 * 60_000;
const SLOW = 600_000;

let toolsDir: string | undefined;
let skipReason: string | undefined;

beforeAll(async () => {
  const t = await llamaCppToolsForTests();
  toolsDir = t.dir;
  skipReason = t.skip;
  if (skipReason) process.stderr.write(`[tests] skipping slm quantize --sweep tests that need llama.cpp: ${skipReason}\n`);
}, BUILD_TIMEOUT);

function box(): Sandbox {
  return sandbox(undefined, toolsDir ? { SLM_LLAMA_CPP_DIR: toolsDir } : {});
}

function needTools(ctx: TestContext): void {
  if (!toolsDir) ctx.skip(skipReason);
}

function registry(sb: Sandbox): Registry {
  const file = path.join(sb.home, "registry.json");
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as Registry) : { version: 1, models: {} };
}

function leftovers(sb: Sandbox): string[] {
  const dir = path.join(sb.home, "models");
  return existsSync(dir) ? readdirSync(dir).filter((n) => n.startsWith(".tmp-")) : [];
}

/** The parts of the --json result these tests read. */
interface Row {
  type: string;
  name: string;
  size: number;
  bitsPerWeight: number;
  pareto: boolean;
  removed: boolean;
  verdict: { kld: boolean; tasks?: boolean; qualifies: boolean };
  eval: { kld: { mean: number; sameTop: number }; tasks: { task: string; score: { accuracy: { value: number } } }[] };
}
interface Sweep {
  source: { eval: { tasks: { task: string; score: { accuracy: { value: number } } }[] } };
  rows: Row[];
  recommended?: string;
  rule: { maxKld: number; maxDrop: number; sourceScores: Record<string, number> };
  kept: string[];
  removed: string[];
  text: { file: string; from: string };
  report?: string;
}

describe("slm quantize --sweep (real llama.cpp tools)", () => {
  it("makes each type, measures it against the source, marks the Pareto front and recommends by the rule", async (ctx) => {
    needTools(ctx);
    const sb = box();
    const report = path.join(mkdtempSync(path.join(tmpdir(), "slm-sweep-")), "sweep.md");
    const r = await slm(["quantize", F32, "--sweep", "Q8_0", "Q4_K_M", "Q2_K", "--text", TEXT, "--task", TASK, "--limit", "20", "--report", report, "--json"], sb);
    expect(r.exitCode, r.all).toBe(0);
    const last = lastJson(r.stdout);
    expect(last.type).toBe("result");
    const s = last.data as Sweep;
    expect(s.rows.map((x) => x.type)).toEqual(["Q8_0", "Q4_K_M", "Q2_K"]);
    expect(s.text.from).toBe("--text");

    // Fewer bits: smaller files, and further from the source.
    const [q8, q4, q2] = s.rows as [Row, Row, Row];
    expect(q8.size).toBeGreaterThan(q4.size);
    expect(q4.size).toBeGreaterThan(q2.size);
    expect(q8.bitsPerWeight).toBeGreaterThan(q2.bitsPerWeight);
    expect(q8.eval.kld.mean).toBeGreaterThan(0);
    expect(q8.eval.kld.mean).toBeLessThan(q4.eval.kld.mean);
    expect(q4.eval.kld.mean).toBeLessThan(q2.eval.kld.mean);
    expect(q8.eval.kld.sameTop).toBeGreaterThan(q2.eval.kld.sameTop);
    // Each step smaller and worse: no type dominates another.
    expect(s.rows.every((x) => x.pareto)).toBe(true);

    // The rule, recomputed from the figures: the smallest type with KLD under 0.05, or every task within 0.02.
    expect(s.rule.maxKld).toBe(0.05);
    expect(s.rule.maxDrop).toBe(0.02);
    const sourceScore = s.source.eval.tasks[0]!.score.accuracy.value;
    expect(s.rule.sourceScores["add-eval"]).toBe(sourceScore);
    const qualifies = (x: Row) => x.eval.kld.mean < 0.05 || x.eval.tasks[0]!.score.accuracy.value >= sourceScore - 0.02 - 1e-9;
    for (const x of s.rows) expect(x.verdict.qualifies, x.type).toBe(qualifies(x));
    const expected = s.rows.filter(qualifies).sort((a, b) => a.size - b.size)[0];
    expect(s.recommended).toBe(expected?.type);

    // Every type registered, with its lineage and the sweep's measurements stored as eval results.
    const reg = registry(sb);
    expect(Object.keys(reg.models).sort()).toEqual(s.rows.map((x) => x.name).sort());
    for (const x of s.rows) {
      const m = reg.models[x.name]!;
      expect(m.quant).toBe(x.type);
      expect(m.lineage[0]!.method).toBe("quantize");
      expect(m.lineage[0]!.from).toBe(F32);
      expect((await readGgufSummary(m.path)).fileType).toBe(x.type);
      const kinds = (m.evals ?? []).map((e) => e.kind).sort();
      expect(kinds).toEqual(["generate", "kld", "perplexity"]);
      expect(m.evals!.find((e) => e.kind === "kld")!.metrics.kld_mean).toBe(x.eval.kld.mean);
    }
    expect(leftovers(sb)).toEqual([]);

    const md = readFileSync(report, "utf8");
    expect(md).toMatch(/^# slm quantize --sweep tiny-arith-f32\.gguf/);
    expect(md).toMatch(/\| Q2_K ◆/);
    expect(md).toMatch(/KLD mean/);
  }, SLOW);

  it("--keep best keeps only the recommended type and removes the others' files and entries; the table says so", async (ctx) => {
    needTools(ctx);
    const sb = box();
    const r = await slm(["quantize", F32, "--sweep", "Q8_0,Q2_K", "--text", TEXT, "--keep", "best"], sb);
    expect(r.exitCode, r.all).toBe(0);
    // Without tasks the KLD decides: Q8_0 is nearly lossless here, Q2_K far from it (asserted above).
    expect(r.stdout).toMatch(/^Q8_0 ◆ ★ /m);
    expect(r.stdout).toMatch(/Recommended: Q8_0 \(tiny-arith-f32-Q8_0/);
    expect(r.stdout).toMatch(/Kept tiny-arith-f32-Q8_0; removed tiny-arith-f32-Q2_K/);
    expect(r.stderr).toMatch(/Q2_K made without an importance matrix/);
    const reg = registry(sb);
    expect(Object.keys(reg.models)).toEqual(["tiny-arith-f32-Q8_0"]);
    expect(existsSync(reg.models["tiny-arith-f32-Q8_0"]!.path)).toBe(true);
    expect(existsSync(path.join(sb.home, "models", "tiny-arith-f32-Q2_K"))).toBe(false);
  }, SLOW);

  it("rejects bad types and sweep-only flags with exit 2 before anything runs", async (ctx) => {
    needTools(ctx);
    const sb = box();
    const cases: [string[], RegExp][] = [
      [["--sweep", "Q8_0", "Q4_K_N", "--text", TEXT], /unknown quantization type "Q4_K_N"[\s\S]*Did you mean Q4_K_M/],
      [["--sweep", "Q8_0", "nonsense", "--text", TEXT], /"NONSENSE" is not a quantization type/],
      [["--sweep", "Q4_K", "Q4_K_M", "--text", TEXT], /names Q4_K_M twice/],
      [["--sweep", "Q8_0", "F16", "--text", TEXT], /F16 is not one/],
      [["--sweep", "IQ2_XS", "--text", TEXT], /IQ2_XS cannot be made without an importance matrix/],
      [["--sweep", "Q8_0"], /give --text FILE/],
      [["--sweep", "Q8_0", "--type", "Q4_K_M", "--text", TEXT], /instead of --type/],
      [["--text", TEXT], /--text works only with --sweep/],
      [["--sweep", "Q8_0", "--text", TEXT, "--limit", "5"], /--limit limits the --task questions/],
      [["--sweep", "Q8_0", "--text", TEXT, "--parallel", "4"], /--parallel sets how many --task questions/],
      [["--parallel", "4"], /--parallel works only with --sweep/],
    ];
    for (const [args, message] of cases) {
      const r = await slm(["quantize", F32, ...args], sb);
      expect(r.exitCode, `${args.join(" ")}\n${r.all}`).toBe(2);
      expect(r.stderr).toMatch(message);
    }
    expect(registry(sb).models).toEqual({});
    expect(existsSync(path.join(sb.home, "models"))).toBe(false);
  }, SLOW);
});

describe("slm quantize --sweep when things go wrong", () => {
  /**
   * A llama-quantize that runs the real one for every type but Q2_K; for Q2_K it writes part of a file
   * and then hangs (to be interrupted) or fails the way a full disk does.
   */
  function fakeTools(): { dir: string; pidFile: string } {
    return writeFakeQuantize(toolsDir!, { failOn: "Q2_K", label: "q2_K" });
  }

  it("Ctrl+C during a type: the finished types stay registered and valid, the interrupted one leaves nothing", async (ctx) => {
    needTools(ctx);
    const fake = fakeTools();
    const sb = sandbox(undefined, { SLM_LLAMA_CPP_DIR: fake.dir });
    const child = slm(["quantize", F32, "--sweep", "Q8_0", "Q2_K", "--text", TEXT], sb);
    let seen = "";
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`Q2_K never started: ${seen}`)), 300_000);
      child.stderr!.on("data", (d: Buffer) => {
        seen += d.toString();
        if (seen.includes("to Q2_K") && existsSync(fake.pidFile)) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    child.kill("SIGINT");
    const r = await child;
    expect(r.exitCode, r.all).toBe(130);
    expect(r.stderr).toMatch(/finished models stay registered: tiny-arith-f32-Q8_0/);
    const reg = registry(sb);
    expect(Object.keys(reg.models)).toEqual(["tiny-arith-f32-Q8_0"]);
    expect((await readGgufSummary(reg.models["tiny-arith-f32-Q8_0"]!.path)).fileType).toBe("Q8_0");
    expect(leftovers(sb)).toEqual([]);
  }, SLOW);

  it("a failing type is an external-tool error; the types made before it stay", async (ctx) => {
    needTools(ctx);
    const fake = fakeTools();
    const sb = sandbox(undefined, { SLM_LLAMA_CPP_DIR: fake.dir, FAKE_MODE: "fail" });
    const r = await slm(["quantize", F32, "--sweep", "Q8_0", "Q2_K", "--text", TEXT], sb);
    expect(r.exitCode, r.all).toBe(6);
    expect(r.stderr).toMatch(/No space left on device/);
    expect(Object.keys(registry(sb).models)).toEqual(["tiny-arith-f32-Q8_0"]);
    expect(leftovers(sb)).toEqual([]);
  }, SLOW);
});
