import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it, type TestContext } from "vitest";
import type { EvalResult, ModelResult } from "../../src/backends/eval/evaluate.js";
import type { GenerationScore } from "../../src/backends/eval/generation.js";
import { firstLines } from "../helpers/accuracy.js";
import { FIXTURE, type Sandbox, lastJson, sandbox, slm } from "../helpers/cli.js";
import { llamaCppToolsForTests } from "../helpers/llamaCppTools.js";
import { finetunePythonForTests } from "../helpers/python.js";
import { DATA, HF, mergedSubModel, quantizeRecipe } from "../helpers/quantRecipe.js";

/**
 * GPTQ and AWQ of tiny-arith end to end: `slm quantize --method gptq|awq` makes the checkpoint, `slm eval` /
 * `slm run` load it through the GGUF it is converted to once (the way back), and the quantized model still
 * adds (and, merged with the subtraction adapter, subtracts). The KL divergence from the F32 model shows each
 * method beating round-to-nearest on the same grid (the recipe's `rtn` method): GPTQ at 2 bits, where
 * round-to-nearest breaks down, and AWQ at 4 bits with the same group size and zero point.
 *
 * The text is held-out sums written plainly ("13+54=67"), not data/eval-text.txt: that file writes the chat
 * markers (<s><|user|>…) as literal text, which --perplexity tokenizes as plain characters (as llama-perplexity
 * does), a sequence tiny-arith never saw; on it every 2-bit model is equally lost (KLD 0.875 for GPTQ, 0.864 for
 * round-to-nearest), while on the sums GPTQ's divergence is a third of round-to-nearest's (0.88 against 2.86).
 *
 * Calibration is kept small (32 windows of 256 tokens, tiny-arith's whole context) so the file stays within a
 * few minutes on 2 cores; every model is made once, in beforeAll, and shared.
 */
const F32 = path.join(FIXTURE, "gguf", "tiny-arith-f32.gguf");
const ADD_TRAIN = path.join(DATA, "add-train.jsonl");
const SUB_TRAIN = path.join(DATA, "sub-train.jsonl");
const CALIBRATION = ["--samples", "32", "--seq-len", "256"];
const BUILD_TIMEOUT = 45 * 60_000;
const SLOW = 240_000;

async function quantize(sb: Sandbox, model: string, args: string[]): Promise<void> {
  const r = await slm(["quantize", model, ...args, ...CALIBRATION, "--json"], sb);
  if (r.exitCode !== 0) throw new Error(`slm quantize ${model} ${args.join(" ")} failed (exit ${r.exitCode}):\n${r.all.slice(-3000)}`);
}

/** `slm run MODEL PROMPT` greedily: the first run of a GPTQ/AWQ folder converts it to GGUF, once. */
async function runOnce(sb: Sandbox, model: string, prompt: string): Promise<string> {
  const r = await slm(["run", model, prompt, "-t", "0"], sb);
  if (r.exitCode !== 0) throw new Error(`slm run ${model} failed (exit ${r.exitCode}):\n${r.all.slice(-3000)}`);
  return r.stdout;
}

async function evalJson(sb: Sandbox, args: string[]): Promise<EvalResult> {
  const r = await slm(["eval", ...args, "--no-store", "--json"], sb);
  if (r.exitCode !== 0) throw new Error(`slm eval ${args.join(" ")} failed (exit ${r.exitCode}):\n${r.all.slice(-3000)}`);
  return lastJson(r.stdout).data as EvalResult;
}

function accuracy(m: ModelResult): number {
  return (m.tasks[0]!.score as GenerationScore).accuracy.value;
}

describe("GPTQ and AWQ of tiny-arith: accuracy through the way back to GGUF, and KL divergence against round-to-nearest", () => {
  let skipReason: string | undefined;
  let sb: Sandbox;
  let work: string;
  let rtn2: string;
  let rtn4: string;
  let arithText: string;
  /** What `slm run` answered, per model, right after it was made (which converted it, in the lanes). */
  const answers = new Map<string, string>();

  beforeAll(async () => {
    const [tools, py] = await Promise.all([llamaCppToolsForTests(), finetunePythonForTests()]);
    skipReason = py.skip ?? tools.skip;
    if (skipReason) {
      process.stderr.write(`[tests] skipping the GPTQ/AWQ accuracy tests: ${skipReason}\n`);
      return;
    }
    const python = py.python!;
    work = mkdtempSync(path.join(tmpdir(), "slm-quant-acc-"));
    // One torch thread: vitest runs two files at once on this 2-core machine (see test/helpers/cli.ts).
    sb = sandbox(undefined, { SLM_LLAMA_CPP_DIR: tools.dir!, SLM_PYTHON: python, OMP_NUM_THREADS: "1" });
    rtn2 = path.join(work, "arith-rtn2");
    rtn4 = path.join(work, "arith-rtn4-asym");
    arithText = path.join(work, "arith.txt");
    writeFileSync(arithText, firstLines("add-eval.jsonl", 500).map((l) => `${l.q}=${l.a}\n`).join(""));
    const made = async (model: string, prompt: string) => answers.set(model, await runOnce(sb, model, prompt));
    // Two lanes of one thread each (the models are independent), each model run once as it is made, which
    // converts it to its GGUF while the other lane quantizes.
    await Promise.all([
      (async () => {
        await quantize(sb, HF, ["--method", "gptq", "--calibration", ADD_TRAIN, "--out", "arith-gptq4"]);
        await made("arith-gptq4", "12+34");
        await quantize(sb, HF, ["--method", "gptq", "--bits", "2", "--calibration", ADD_TRAIN, "--out", "arith-gptq2"]);
        await made("arith-gptq2", "12+34");
        // A merged fine-tune: the folder `slm finetune --merge` makes (its merge recipe), from the fixture's subtraction adapter.
        const merged = await mergedSubModel(python, path.join(work, "tiny-arith-sub-merged"));
        await quantize(sb, merged, ["--method", "gptq", "--calibration", SUB_TRAIN, "--out", "sub-gptq4"]);
        await made("sub-gptq4", "46-12");
      })(),
      (async () => {
        await quantize(sb, HF, ["--method", "awq", "--calibration", ADD_TRAIN, "--out", "arith-awq4"]);
        await made("arith-awq4", "12+34");
        // The baselines: the same grids without GPTQ's error feedback / AWQ's scales and clipping. AWQ fits a
        // zero point, so its baseline is the asymmetric grid. Rounding needs no calibration data.
        await quantizeRecipe(python, { model: HF, output_dir: rtn2, method: "rtn", bits: 2, group_size: 128, sym: true, threads: 1 });
        await made(rtn2, "12+34");
        await quantizeRecipe(python, { model: HF, output_dir: rtn4, method: "rtn", bits: 4, group_size: 128, sym: false, threads: 1 });
        await made(rtn4, "12+34");
      })(),
    ]);
  }, BUILD_TIMEOUT);

  const need = (ctx: TestContext) => {
    if (skipReason) ctx.skip(skipReason);
  };

  it(
    "GPTQ 4-bit and AWQ 4-bit still add: ≥ 95 % exact match on the first 100 of add-eval, and slm run answers",
    async (ctx) => {
      need(ctx);
      const r = await evalJson(sb, ["arith-gptq4", "arith-awq4", "--task", path.join(DATA, "add-eval.jsonl"), "--limit", "100"]);
      // Each folder runs as the F16 GGUF converted from it once (the dequantized weights, rounded to F16).
      expect(r.models.map((m) => [m.label, m.tasks[0]!.score.questions])).toEqual([["arith-gptq4-F16", 100], ["arith-awq4-F16", 100]]);
      for (const m of r.models) expect(accuracy(m), m.label).toBeGreaterThanOrEqual(0.95);
      expect([answers.get("arith-gptq4"), answers.get("arith-awq4")]).toEqual(["46", "46"]);
    },
    SLOW,
  );

  it(
    "a merged fine-tune (tiny-arith + the subtraction adapter) → GPTQ 4-bit still subtracts: ≥ 95 % on the first 100 of sub-eval",
    async (ctx) => {
      need(ctx);
      const r = await evalJson(sb, ["sub-gptq4", "--task", path.join(DATA, "sub-eval.jsonl"), "--limit", "100"]);
      expect(accuracy(r.models[0]!)).toBeGreaterThanOrEqual(0.95);
      expect(answers.get("sub-gptq4")).toBe("34");
    },
    SLOW,
  );

  it(
    "KL divergence from F32: GPTQ below round-to-nearest at 2 bits, AWQ below round-to-nearest at 4 bits (g128, zero point)",
    async (ctx) => {
      need(ctx);
      const r = await evalJson(sb, ["arith-gptq2", rtn2, "arith-awq4", rtn4, "--perplexity", arithText, "--kld-base", F32]);
      const [gptq2, r2, awq4, r4] = r.models.map((m) => m.kld!.mean);
      expect(r.models.every((m) => m.kld!.tokens > 1000)).toBe(true);
      expect(gptq2!, `GPTQ 2-bit ${gptq2} vs RTN 2-bit ${r2}`).toBeLessThan(r2!);
      expect(awq4!, `AWQ 4-bit ${awq4} vs RTN 4-bit ${r4}`).toBeLessThan(r4!);
      // Sanity: 4 bits lose less than 2 bits, and neither is the F32 model itself.
      expect(awq4!).toBeGreaterThan(0);
      expect(awq4!).toBeLessThan(gptq2!);
    },
    SLOW,
  );
});
