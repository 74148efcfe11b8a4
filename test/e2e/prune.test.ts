import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it, type TestContext } from "vitest";
import type { PruneResult } from "../../src/backends/prune/run.js";
import { readGgufHeader } from "../../src/backends/gguf/reader.js";
import type { ModelEntry } from "../../src/backends/store/types.js";
import { FIXTURE, interruptWhen, lastJson, modelDirs, registry, ROOT, sandbox, type Sandbox, slm } from "../helpers/cli.js";
import { fixtureDifferences } from "../helpers/ggufCompare.js";
import { llamaCppToolsForTests } from "../helpers/llamaCppTools.js";
import { convertPythonForTests, quantizePythonForTests } from "../helpers/python.js";

/** `slm prune` end to end on the fixture, against transformers' own hidden states and llama-quantize's own layer removal. */
const HF = path.join(FIXTURE, "hf");
const F32 = path.join(FIXTURE, "gguf", "tiny-arith-f32.gguf");
const TEXT = path.join(FIXTURE, "data", "eval-text.txt");
const BUILD_TIMEOUT = 45 * 60_000;
const SLOW = 240_000;
/** Few, short windows: the scores are compared, not judged. */
const WINDOWS = ["--samples", "8", "--seq-len", "64"];

describe("slm prune", () => {
  const bad = sandbox();

  it("refuses a GGUF, saying how to get the Hugging Face weights", async () => {
    const r = await slm(["prune", F32, "--layers", "1"], bad);
    expect(r.exitCode, r.all).toBe(2);
    expect(r.stderr).toContain("is a GGUF model; pruning needs the original Hugging Face weights");
    expect(r.stderr).toContain("slm pull <org/repo> --format hf");
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it("refuses --layers as many as the model's blocks, both cuts at once, and no cut, leaving nothing", async () => {
    const all = await slm(["prune", HF, "--layers", "4"], bad);
    expect(all.exitCode, all.all).toBe(2);
    expect(all.stderr).toContain("has 4 decoder blocks, so at most 3 can be dropped");
    const both = await slm(["prune", HF, "--layers", "1", "--ffn", "0.25"], bad);
    expect(both.exitCode, both.all).toBe(2);
    expect(both.stderr).toContain("Give --layers or --ffn, not both");
    const none = await slm(["prune", HF], bad);
    expect(none.exitCode, none.all).toBe(2);
    expect(none.stderr).toContain("--layers K");
    const ratio = await slm(["prune", HF, "--ffn", "1.5"], bad);
    expect(ratio.exitCode, ratio.all).toBe(2);
    expect(modelDirs(bad)).toEqual([]);
    expect(registry(bad).models).toEqual({});
  });

  describe("for real", () => {
    let skipReason: string | undefined;
    let sb: Sandbox;
    let tools: string | undefined;
    let python: string | undefined;

    beforeAll(async () => {
      const [t, py, conv] = await Promise.all([llamaCppToolsForTests(), quantizePythonForTests(), convertPythonForTests()]);
      skipReason = py.skip ?? conv.skip ?? t.skip;
      if (skipReason) process.stderr.write(`[tests] skipping slm prune for real: ${skipReason}\n`);
      tools = t.dir;
      python = py.python;
      sb = sandbox(undefined, { ...(tools ? { SLM_LLAMA_CPP_DIR: tools } : {}), ...(python ? { SLM_PYTHON: python } : {}), OMP_NUM_THREADS: "1" });
    }, BUILD_TIMEOUT);

    const need = (ctx: TestContext) => {
      if (skipReason) ctx.skip(skipReason);
    };

    it("scores blocks as transformers' output_hidden_states do, and drops block k as llama-quantize --prune-layers k does", async (ctx) => {
      need(ctx);
      const r = await slm(["prune", HF, "--layers", "1", "--calibration", TEXT, ...WINDOWS, "--out", "arith-3", "--json"], sb);
      expect(r.exitCode, r.all).toBe(0);
      const { model, recipe } = lastJson(r.stdout).data as PruneResult;
      expect(model.format).toBe("hf");

      const ref = spawnSync(python!, [path.join(ROOT, "test", "python", "prune_reference_scores.py"), HF, TEXT, "8", "64"], { encoding: "utf8", env: { ...process.env, OMP_NUM_THREADS: "1" } });
      expect(ref.status, ref.stderr).toBe(0);
      const want = JSON.parse(ref.stdout) as { windows: number; scores: number[] };
      expect(recipe.samples).toBe(want.windows);
      expect(recipe.block_influence).toHaveLength(4);
      recipe.block_influence!.forEach((s, i) => expect(s).toBeCloseTo(want.scores[i]!, 5));
      const k = want.scores.indexOf(Math.min(...want.scores));
      expect(recipe.removed_layers).toEqual([k]);
      expect(model.lineage[0]).toMatchObject({ from: HF, method: "prune-layers", parameters: { removedLayers: [k], calibration: { file: TEXT, format: "text" } } });
      const info = await slm(["info", "arith-3"], sb);
      expect(info.stdout.replace(/\s+/g, " ")).toContain(`block ${k} of 4 dropped: the lowest block influence`);

      const conv = await slm(["convert", "arith-3", "--outtype", "f32", "--out", "arith-3-f32", "--json"], sb);
      expect(conv.exitCode, conv.all).toBe(0);
      const gguf = (lastJson(conv.stdout).data as { model: ModelEntry }).model.path;
      const dir = mkdtempSync(path.join(tmpdir(), "slm-prune-"));
      const theirs = path.join(dir, `drop${k}.gguf`);
      const q = spawnSync(path.join(tools!, "llama-quantize"), ["--prune-layers", String(k), F32, theirs, "F32", "1"], { encoding: "utf8" });
      expect(q.status, q.stderr).toBe(0);
      expect(readGgufHeader(gguf).metadata.get("llama.block_count")).toBe(3);
      expect(fixtureDifferences(gguf, theirs)).toEqual([]);
    }, SLOW);

    it("cuts 25 % of the FFN to a multiple of 32, warns about K-quants, heals by distillation, converts and runs", async (ctx) => {
      need(ctx);
      const r = await slm(["prune", HF, "--ffn", "0.25", "--calibration", TEXT, ...WINDOWS, "--heal-distill", "--heal-steps", "2", "--json"], sb);
      expect(r.exitCode, r.all).toBe(0);
      const { model, recipe } = lastJson(r.stdout).data as PruneResult;
      expect(model.name).toBe("tiny-arith-pruned-ffn576");
      expect([recipe.intermediate_before, recipe.intermediate_after, recipe.removed_channels]).toEqual([768, 576, 4 * 192]);
      expect(r.stdout).toMatch(/"level":"warn","message":"the pruned FFN width 576 is a multiple of 32 but not of 256/);
      expect(recipe.heal).toMatchObject({ mode: "distill", steps: 2 });
      expect(Object.keys(recipe.phases)).toEqual(["load", "calibration", "measure", "cut", "heal", "write"]);
      const run = await slm(["run", model.name, "12+34", "-t", "0", "-n", "8"], sb);
      expect(run.exitCode, run.all).toBe(0);
      const info = await slm(["info", model.name], sb);
      expect(info.stdout.replace(/\s+/g, " ")).toContain("FFN 768 → 576 channels per block, the smallest activations removed");
      const converted = Object.values(registry(sb).models).find((m) => m.name === `${model.name}-F16`)!;
      expect(readGgufHeader(converted.path).metadata.get("llama.feed_forward_length")).toBe(576);
    }, SLOW);

    it("shows healing's loss as a training run does, not one line per step", async (ctx) => {
      need(ctx);
      // Plain output (the sandbox sets CI): one line per step would be 100 lines at the default --heal-steps.
      const r = await slm(["prune", HF, "--layers", "1", "--calibration", TEXT, "--samples", "2", "--seq-len", "32", "--heal-distill", "--heal-steps", "12", "--out", "healed"], sb);
      expect(r.exitCode, r.all).toBe(0);
      expect(r.stderr).not.toMatch(/loss #\d+:/);
      expect(r.stderr).toMatch(/✓ Healing: distilling from the unpruned model \(loss [\d.]+ → [\d.]+\)/);
      expect(r.stderr.split("\n").filter((l) => /\bloss\b/.test(l)).length).toBeLessThanOrEqual(4);
    }, SLOW);

    it("leaves no folder and no entry when Ctrl+C comes while it reads the calibration data", async (ctx) => {
      need(ctx);
      const before = modelDirs(sb);
      const child = slm(["prune", HF, "--layers", "1", "--samples", "4096", "--seq-len", "256", "--calibration", path.join(FIXTURE, "data", "add-train.jsonl"), "--out", "never", "--json"], sb);
      // A million tokens of chat to render and tokenize: seconds, in which the interrupt arrives.
      const sent = interruptWhen(child, /"id":"prune:calibration","status":"start"/);
      const r = await child;
      expect(sent()).toBe(true);
      expect(r.exitCode, r.all).toBe(130);
      expect(modelDirs(sb)).toEqual(before);
      expect(registry(sb).models.never).toBeUndefined();
    }, SLOW);
  });
});
