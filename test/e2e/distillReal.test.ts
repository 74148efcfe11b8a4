import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it, type TestContext } from "vitest";
import { FIXTURE, interruptWhen, lastJson, registry, slm } from "../helpers/cli.js";
import { realRecipe } from "../helpers/finetuneRun.js";

/**
 * The verification, end to end through the CLI with the real recipe on the CPU: teacher =
 * tiny-arith with the fixture's subtraction adapter (the PEFT folder, converted by slm), student =
 * tiny-arith's HF weights, which only add; prompts = the subtraction problems of sub-train.jsonl
 * WITHOUT their answers. The student never sees a label, only the teacher's answers, and must score
 * ≥ 95 % on sub-eval. On the way: Ctrl+C during training (exit 130, nothing registered, the dataset
 * kept) and --resume, which reuses the dataset and continues from the checkpoint.
 */
const SLOW = 600_000;
const HF = path.join(FIXTURE, "hf");
const ADAPTER = path.join(FIXTURE, "lora-sub");
const SUB_EVAL = path.join(FIXTURE, "data", "sub-eval.jsonl");
/** Full fine-tuning learns subtraction in far fewer steps than LoRA (docs/distill.md#time-of-each-phase). */
const STEPS = 600;
const TRAIN = ["--full", "--max-steps", String(STEPS), "--batch-size", "32", "--lr", "1e-3", "--device", "cpu"];

const real = realRecipe("slm distill with the real recipe");
const needPython = (ctx: TestContext) => real.need(ctx);

const prompts = path.join(mkdtempSync(path.join(tmpdir(), "slm-distill-real-")), "subtractions.txt");
writeFileSync(
  prompts,
  readFileSync(path.join(FIXTURE, "data", "sub-train.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => (JSON.parse(l) as { messages: { content: string }[] }).messages[0]!.content)
    .join("\n") + "\n",
);
const args = ["distill", "--teacher", "tiny-arith", "--teacher-lora", ADAPTER, "--student", HF, "--prompts", prompts, "--out", "sub", ...TRAIN, "--json"];

describe("slm distill with the real recipe (CPU)", () => {
  let interrupted = false;

  it("Ctrl+C during training: exit 130, the dataset kept, nothing registered", async (ctx) => {
    needPython(ctx);
    const child = slm(args, real.sb);
    // Past the first checkpoint (step 60: every STEPS/10 steps), well before the end; the recipe reports
    // progress every few steps, not every one.
    const sent = interruptWhen(child, /"id":"train","unit":"steps","current":(6[1-9]|[7-9]\d|1\d\d)\b/);
    const r = await child;
    expect(sent()).toBe(true);
    expect(r.exitCode, r.all).toBe(130);
    expect(lastJson(r.stdout).error).toMatchObject({ exitCode: 130, hint: expect.stringMatching(/--resume/) });
    expect(existsSync(path.join(real.sb.home, "datasets", "tiny-arith+sub", "dataset.json"))).toBe(true);
    expect(registry(real.sb).models["tiny-arith+sub"]).toBeUndefined();
    interrupted = true;
  }, SLOW);

  it("--resume reuses the teacher's answers, continues training; the student subtracts (≥ 95 % on sub-eval)", async (ctx) => {
    needPython(ctx);
    if (!interrupted) ctx.skip("the interrupted run did not happen");
    const r = await slm([...args, "--resume"], real.sb);
    expect(r.exitCode, r.all).toBe(0);
    const res = lastJson(r.stdout).data as { dataset: { seconds: number; records: number }; generation: { reused: boolean }; finetune: { seconds: number; training: { steps: number; seconds: number; resumed_from: string | null } } };
    expect(res.generation.reused).toBe(true);
    expect(res.finetune.training.resumed_from).toMatch(/step-\d+$/);
    expect(res.finetune.training.steps).toBe(STEPS);
    const entry = registry(real.sb).models["tiny-arith+sub"]!;
    const step = entry.lineage.at(-1)!;
    expect(step.method).toBe("distill");
    expect((step.parameters as { distill: unknown }).distill).toEqual({ teacher: "tiny-arith", teacherLora: [path.resolve(ADAPTER)], dataset: path.join(real.sb.home, "datasets", "tiny-arith+sub"), kdLogprobs: null });
    const e = await slm(["eval", "tiny-arith+sub", "--task", SUB_EVAL, "--no-store", "--json"], real.sb);
    expect(e.exitCode, e.all).toBe(0);
    const accuracy = (lastJson(e.stdout).data as { models: { tasks: { score: { accuracy: { value: number } } }[] }[] }).models[0]!.tasks[0]!.score.accuracy.value;
    process.stderr.write(`[distillReal] sub-eval exact match of the distilled student: ${(accuracy * 100).toFixed(1)} %; teacher ${res.dataset.seconds} s for ${res.dataset.records} answers, resumed fine-tune ${res.finetune.seconds.toFixed(1)} s (training ${res.finetune.training.seconds.toFixed(1)} s)\n`);
    expect(accuracy).toBeGreaterThanOrEqual(0.95);
  }, SLOW);
});
