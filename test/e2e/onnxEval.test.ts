import { cpSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it, type TestContext } from "vitest";
import type { ChoiceScore } from "../../src/backends/eval/choice.js";
import type { EvalResult } from "../../src/backends/eval/evaluate.js";
import type { GenerationScore } from "../../src/backends/eval/generation.js";
import type { ModelEntry } from "../../src/backends/store/types.js";
import { FIXTURE, type Sandbox, lastJson, sandbox, slm } from "../helpers/cli.js";
import { onnxFixture } from "../helpers/onnxFixture.js";
import { onnxExportPythonForTests } from "../helpers/python.js";

/**
 * The GGUF and the ONNX exports of tiny-arith scored in ONE `slm eval` table: the first 100 questions of
 * add-eval (generation) and of add-choice (multiple choice). The F32 GGUF is the reference: at temperature 0
 * the fp32 ONNX model must give the very same answers, and both runtimes must pick the same choices. And a
 * fine-tune (tiny-arith + the subtraction adapter) exported merged by `slm export` still subtracts.
 */
const SLOW = 300_000;
const DATA = path.join(FIXTURE, "data");
const F32 = path.join(FIXTURE, "gguf", "tiny-arith-f32.gguf");
const QUESTIONS = 100;

const generation = (m: EvalResult["models"][number]) => m.tasks.find((t) => t.score.kind === "generate")!.score as GenerationScore;
const choice = (m: EvalResult["models"][number]) => m.tasks.find((t) => t.score.kind === "choice")!.score as ChoiceScore;

describe("slm eval with GGUF and ONNX models in one table", () => {
  let skip: string | undefined;
  let result: EvalResult;
  let table = "";

  beforeAll(async () => {
    const f = await onnxFixture();
    skip = f.skip;
    if (skip) {
      process.stderr.write(`[tests] skipping slm eval on ONNX: ${skip}\n`);
      return;
    }
    const work = mkdtempSync(path.join(tmpdir(), "slm-onnx-eval-"));
    const dir = f.dir!;
    const sb = sandbox();
    const args = ["eval", F32, `${dir}:fp32`, `${dir}:q4`, "--task", path.join(DATA, "add-eval.jsonl"), "--task", path.join(DATA, "add-choice.jsonl"), "--limit", String(QUESTIONS), "--threads", "1"];
    // --report: the run's table as people share it, beside the JSON the assertions read.
    const report = path.join(work, "report.md");
    const r = await slm([...args, "--report", report, "--json"], sb);
    if (r.exitCode !== 0) throw new Error(`slm eval failed (${r.exitCode}):\n${r.all}`);
    result = lastJson(r.stdout).data as EvalResult;
    table = readFileSync(report, "utf8");
  }, SLOW);
  const need = (ctx: TestContext) => {
    if (skip) ctx.skip(skip);
  };

  it("scores the GGUF, ONNX fp32 and ONNX q4 side by side, each ≥ 95 % on the first 100 of add-eval", (ctx) => {
    need(ctx);
    expect(result.models).toHaveLength(3);
    for (const m of result.models) {
      const g = generation(m);
      expect(g.questions).toBe(QUESTIONS);
      expect(g.accuracy.value, `${m.label}: ${g.accuracy.value}`).toBeGreaterThanOrEqual(0.95);
    }
    // One table (the report's first: consecutive "|" lines), a row per model, the ONNX variants by dtype.
    const lines = table.split("\n");
    const first = lines.findIndex((l) => l.startsWith("|"));
    const rows = lines.slice(first, lines.findIndex((l, i) => i > first && !l.startsWith("|")));
    expect(result.models.map((m) => m.label)).toEqual(["tiny-arith-f32.gguf", "tiny-arith-onnx:fp32", "tiny-arith-onnx:q4"]);
    for (const m of result.models) expect(rows.filter((r) => r.startsWith(`| ${m.label} |`)), table).toHaveLength(1);
  });

  it("gives the F32 GGUF's greedy answers, word for word, from the fp32 ONNX model", (ctx) => {
    need(ctx);
    const [gguf, fp32] = result.models.map(generation);
    const differ = gguf!.samples.filter((s, i) => s.output !== fp32!.samples[i]!.output).map((s, i) => `line ${s.line}: ${JSON.stringify(s.output)} vs ${JSON.stringify(fp32!.samples[i]!.output)}`);
    expect(differ).toEqual([]);
    expect(fp32!.samples.map((s) => s.line)).toEqual(gguf!.samples.map((s) => s.line));
  });

  it("picks the same choices on both runtimes, with log-likelihoods close to llama.cpp's", (ctx) => {
    need(ctx);
    const [gguf, fp32, q4] = result.models.map(choice);
    expect(gguf!.questions).toBe(QUESTIONS);
    expect(fp32!.samples.map((s) => s.pick)).toEqual(gguf!.samples.map((s) => s.pick));
    expect(fp32!.samples.map((s) => s.pickNorm)).toEqual(gguf!.samples.map((s) => s.pickNorm));
    // 4-bit weights move the scores a little; the picks of a model this sure of its sums do not move.
    expect(q4!.samples.map((s) => s.pick)).toEqual(gguf!.samples.map((s) => s.pick));
    // Summed over a choice's tokens (up to 4): llama.cpp's F16 KV cache and flash attention put ~4e-3 on each
    // (onnxParity.test.ts measures it per token), so a sum may differ by a few times that.
    const worst = Math.max(...gguf!.samples.flatMap((s, i) => s.logLikelihoods.map((l, j) => Math.abs(l - fp32!.samples[i]!.logLikelihoods[j]!))));
    expect(worst).toBeLessThan(5e-2);
  });
});

describe("a fine-tune exported merged", () => {
  it("`slm export tiny-arith+sub --format onnx` subtracts: ≥ 95 % on the first 100 of sub-eval, through slm's ONNX runtime", async (ctx) => {
    const py = await onnxExportPythonForTests();
    if (py.skip) ctx.skip(py.skip);
    const sb = sandbox(undefined, { SLM_PYTHON: py.python!, OMP_NUM_THREADS: "1" });
    registerFinetune(sb, "tiny-arith+sub");
    const exp = await slm(["export", "tiny-arith+sub", "--format", "onnx", "--dtype", "q4", "--json"], sb);
    expect(exp.exitCode, exp.all).toBe(0);
    const ev = await slm(["eval", "tiny-arith+sub-onnx", "tiny-arith+sub", "--task", path.join(DATA, "sub-eval.jsonl"), "--limit", String(QUESTIONS), "--threads", "1", "--json"], sb);
    expect(ev.exitCode, ev.all).toBe(0);
    const [onnx, gguf] = (lastJson(ev.stdout).data as EvalResult).models.map(generation);
    expect(onnx!.accuracy.value).toBeGreaterThanOrEqual(0.95);
    // The GGUF base with the adapter applied at run time, beside it: the merge lost nothing that matters.
    expect(onnx!.accuracy.value).toBeGreaterThanOrEqual(gguf!.accuracy.value - 0.03);
  }, SLOW);
});

/**
 * A fine-tune as `slm finetune` leaves one that was not merged: `<base>+<name>` registered as the base GGUF
 * with the GGUF adapter, its run folder holding the PEFT adapter and run.json naming the Hugging Face base.
 * The adapter is the fixture's trained subtraction adapter (training one here would take minutes).
 */
function registerFinetune(sb: Sandbox, name: string): void {
  const runDir = path.join(sb.home, "runs", name);
  mkdirSync(runDir, { recursive: true });
  cpSync(path.join(FIXTURE, "lora-sub"), path.join(runDir, "adapter"), { recursive: true });
  writeFileSync(path.join(runDir, "run.json"), JSON.stringify({ version: 1, name, config: { base: path.join(FIXTURE, "hf") }, finishedAt: "2026-01-01T00:00:00Z" }));
  const gguf = path.join(FIXTURE, "gguf", "tiny-arith-f16.gguf");
  const entry: ModelEntry = {
    name, format: "gguf", path: gguf, files: [{ path: gguf, size: statSync(gguf).size }], source: { type: "derived" }, size: statSync(gguf).size,
    adapters: [{ path: path.join(FIXTURE, "gguf", "lora-sub-f32.gguf"), scale: 1 }], lineage: [{ from: "tiny-arith", method: "lora", parameters: {}, at: "2026-01-01T00:00:00Z" }], createdAt: "2026-01-01T00:00:00Z",
  };
  mkdirSync(sb.home, { recursive: true });
  writeFileSync(path.join(sb.home, "registry.json"), JSON.stringify({ version: 1, models: { [name]: entry } }));
}
