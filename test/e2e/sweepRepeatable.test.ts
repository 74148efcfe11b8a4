import { readFileSync } from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { Registry } from "../../src/backends/store/types.js";
import { FIXTURE, type Sandbox, lastJson, sandbox, slm } from "../helpers/cli.js";
import { llamaCppToolsForTests } from "../helpers/llamaCppTools.js";

const F32 = path.join(FIXTURE, "gguf", "tiny-arith-f32.gguf");
const TEXT = path.join(FIXTURE, "data", "eval-text.txt");
const TASK = path.join(FIXTURE, "data", "add-eval.jsonl");
const BUILD_TIMEOUT = 45 * 60_000;

/**
 * Sized so that, without one native sampling call at a time per context (src/backends/llama/
 * serialSampling.ts), most sweeps change some answers: 16 sequences sample at once after each decode,
 * and 200 questions give hundreds of decodes where a question's prompt shares a batch with other
 * sequences' tokens, which is when llama.cpp reorders output rows on the first read.
 */
const QUESTIONS = "200";
const PARALLEL = "16";
const SWEEPS = 3;

/** Every answer of the one task, by question line. */
type Answers = Record<number, string>;
interface Scored {
  tasks: { task: string; score: { samples: { line: number; output: string }[] } }[];
}

function answers(m: Scored): Answers {
  expect(m.tasks.map((t) => t.task)).toEqual(["add-eval"]);
  const samples = m.tasks[0]!.score.samples;
  expect(samples).toHaveLength(Number(QUESTIONS));
  return Object.fromEntries(samples.map((s) => [s.line, s.output]));
}

function registry(sb: Sandbox): Registry {
  return JSON.parse(readFileSync(path.join(sb.home, "registry.json"), "utf8")) as Registry;
}

describe("slm quantize --sweep scores as slm eval does", () => {
  let toolsDir: string | undefined;
  let skipReason: string | undefined;

  beforeAll(async () => {
    const t = await llamaCppToolsForTests();
    toolsDir = t.dir;
    skipReason = t.skip;
    if (skipReason) process.stderr.write(`[tests] skipping the sweep-repeatability test, which needs llama.cpp's tools: ${skipReason}\n`);
  }, BUILD_TIMEOUT);

  it("gives every question the answer slm eval gives with the same --parallel, sweep after sweep, whatever node's thread pool", async (ctx) => {
    if (!toolsDir) ctx.skip(skipReason);
    const sb = sandbox(undefined, { SLM_LLAMA_CPP_DIR: toolsDir! });
    const sweeps: { source: Answers; q8: Answers; name: string }[] = [];
    for (let i = 0; i < SWEEPS; i++) {
      // A user may set UV_THREADPOOL_SIZE (slm keeps it): several pool threads then sample the
      // sequences of one batch at the same moment, which is what used to mix up their answers.
      const r = await slm(["quantize", F32, "--sweep", "Q8_0", "--out", `run${i}`, "--text", TEXT, "--task", TASK, "--limit", QUESTIONS, "--parallel", PARALLEL, "--json"], sb, {
        env: { ...sb.env, UV_THREADPOOL_SIZE: "8" },
      });
      expect(r.exitCode, r.all).toBe(0);
      const s = lastJson(r.stdout).data as { source: { eval: Scored & { parallel: number } }; rows: { name: string; eval: Scored & { parallel: number } }[] };
      expect(s.source.eval.parallel).toBe(Number(PARALLEL));
      sweeps.push({ source: answers(s.source.eval), q8: answers(s.rows[0]!.eval), name: s.rows[0]!.name });
    }
    // llama-quantize is deterministic: every sweep's Q8_0 is the same file, so one `slm eval` of it stands for all.
    const reg = registry(sb);
    const q8 = sweeps.map((s) => readFileSync(reg.models[s.name]!.path));
    for (const f of q8.slice(1)) expect(f.equals(q8[0]!)).toBe(true);

    const e = await slm(["eval", F32, sweeps[0]!.name, "--task", TASK, "--limit", QUESTIONS, "--parallel", PARALLEL, "--no-store", "--json"], sb);
    expect(e.exitCode, e.all).toBe(0);
    const [source, quantized] = (lastJson(e.stdout).data as { models: Scored[] }).models.map(answers) as [Answers, Answers];
    for (const [i, s] of sweeps.entries()) {
      expect(s.source, `sweep ${i}: the source's answers`).toEqual(source);
      expect(s.q8, `sweep ${i}: Q8_0's answers`).toEqual(quantized);
    }
  }, 900_000);
});
