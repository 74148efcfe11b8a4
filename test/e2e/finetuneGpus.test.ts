import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { describe, expect, it, type TestContext } from "vitest";
import { FIXTURE, interruptWhen, lastJson, slm } from "../helpers/cli.js";
import { adapterTensors, lossPoints, maxDifference, processesMentioning, realRecipe, runEvents } from "../helpers/finetuneRun.js";

/**
 * `slm finetune --gpus N`: data-parallel training, checked on the CPU (`--device cpu` runs the N
 * processes on the CPU over gloo; on GPUs the same code uses NCCL). Two processes with --batch-size 4
 * must train what one process trains with --batch-size 4 --grad-accum 2 (the same sums in the same order:
 * mathematically one batch of 8), and Ctrl+C must stop both after the same step with one checkpoint,
 * leave no process behind, and resume to the same weights as an uninterrupted run.
 * Python from SLM_TEST_PYTHON, as in finetuneReal.test.ts; skipped by name without it.
 */
const HF = path.join(FIXTURE, "hf");
const SUB = path.join(FIXTURE, "data", "sub-train.jsonl");
const SLOW = 300_000;
const STEPS = 40;
const COMMON = ["--max-steps", String(STEPS), "--lr", "5e-3", "--rank", "8", "--alpha", "16", "--device", "cpu", "--json"];

interface Result {
  model: { name: string };
  peftAdapter: string;
  training: { steps: number; tokens: number; train_loss: number; resumed_from: string | null };
}


const real = realRecipe("slm finetune --gpus");
const needPython = (ctx: TestContext) => real.need(ctx);

describe("slm finetune --gpus (data-parallel processes, on the CPU)", () => {
  it("asks for the GPUs it needs: an error that says how many torch sees and how to use the CPU", async (ctx) => {
    needPython(ctx);
    const r = await slm(["finetune", HF, "--lora", SUB, "--out", "nogpu", "--gpus", "2", "--max-steps", "2"], real.sb);
    expect(r.exitCode, r.all).toBe(2);
    expect(r.stderr).toMatch(/--gpus 2 needs 2 CUDA GPUs; torch sees 0\./);
    expect(r.stderr).toMatch(/--device cpu/);
    // Said before the base model is converted or anything trains.
    expect(r.stderr).not.toMatch(/Converting|Traceback/);
    expect(existsSync(path.join(real.sb.home, "models", "tiny-arith+nogpu"))).toBe(false);
  }, SLOW);

  let two: Result | undefined;

  it("two processes with --batch-size 4 train what one process trains with --batch-size 4 --grad-accum 2", async (ctx) => {
    needPython(ctx);
    const r2 = await slm(["finetune", HF, "--lora", SUB, "--out", "two", "--gpus", "2", "--batch-size", "4", ...COMMON], real.sb);
    expect(r2.exitCode, r2.all).toBe(0);
    const r1 = await slm(["finetune", HF, "--lora", SUB, "--out", "one", "--batch-size", "4", "--grad-accum", "2", ...COMMON], real.sb);
    expect(r1.exitCode, r1.all).toBe(0);
    two = lastJson(r2.stdout).data as Result;
    const one = lastJson(r1.stdout).data as Result;
    expect(two.training.steps).toBe(STEPS);
    expect(two.training.tokens).toBe(one.training.tokens);
    expect(two.model.name).toBe("tiny-arith+two");
    // The log says how it ran.
    expect(r2.stdout).toMatch(/device cpu × 2 processes/);
    const l2 = lossPoints(runEvents(r2.stdout));
    const l1 = lossPoints(runEvents(r1.stdout));
    expect(l2.map(([s]) => s)).toEqual(l1.map(([s]) => s));
    expect(l1[0]![1]).toBeGreaterThan(8); // the base is confidently wrong at first…
    expect(one.training.train_loss).toBeLessThan(l1[0]![1] / 3); // …and training moves it far
    // Measured equal to ~1e-7 over 150 steps. Against one process with --batch-size 8 (another float
    // summation order) the runs part by 1e-3 within 30 steps at this learning rate: the check would then
    // measure chaos, not correctness.
    for (const [i, [, v]] of l2.entries()) expect(Math.abs(v / l1[i]![1] - 1), `loss at step ${l1[i]![0]}`).toBeLessThan(1e-5);
    expect(maxDifference(adapterTensors(two.peftAdapter), adapterTensors(one.peftAdapter))).toBeLessThan(1e-5);
  }, SLOW);

  it("Ctrl+C stops both processes after the same step with one checkpoint; --resume ends where the uninterrupted run did", async (ctx) => {
    needPython(ctx);
    if (!two) ctx.skip("the uninterrupted two-process run did not happen");
    const args = ["finetune", HF, "--lora", SUB, "--out", "stopped", "--gpus", "2", "--batch-size", "4", ...COMMON];
    const child = slm(args, real.sb);
    const sent = interruptWhen(child, /"id":"train","unit":"steps","current":([5-9]|[12]\d)\b/);
    const r = await child;
    expect(sent()).toBe(true);
    expect(r.exitCode, r.all).toBe(130);
    expect(lastJson(r.stdout).error).toMatchObject({ exitCode: 130, hint: expect.stringMatching(/--resume/) });
    const run = path.join(real.sb.home, "runs", "tiny-arith+stopped");
    const ckpts = readdirSync(path.join(run, "checkpoints"));
    expect(ckpts.length, ckpts.join()).toBeGreaterThan(0);
    // Both ranks agreed on the step: one interruption message, and the newest checkpoint is that step.
    const stoppedAt = /interrupted at step (\d+) of/.exec(r.stdout)?.[1];
    expect(stoppedAt).toBeDefined();
    expect(ckpts).toContain(`step-${stoppedAt}`);
    expect(processesMentioning(real.sb.home)).toEqual([]);
    expect(existsSync(path.join(real.sb.home, "models", "tiny-arith+stopped"))).toBe(false);

    const resumed = await slm([...args, "--resume"], real.sb);
    expect(resumed.exitCode, resumed.all).toBe(0);
    const res = lastJson(resumed.stdout).data as Result;
    expect(res.training.resumed_from).toMatch(new RegExp(`step-${stoppedAt}$`));
    expect(res.training.steps).toBe(STEPS);
    expect(maxDifference(adapterTensors(res.peftAdapter), adapterTensors(two!.peftAdapter))).toBe(0);
  }, SLOW);
});
