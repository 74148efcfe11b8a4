import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import type { Registry } from "../../src/backends/store/types.js";
import { FIXTURE, lastJson, slm } from "../helpers/cli.js";
import { realRecipe } from "../helpers/finetuneRun.js";
import { ggufDifferences } from "../helpers/ggufCompare.js";
import { readGgufHeader } from "../../src/backends/gguf/reader.js";

/**
 * `slm finetune --full` with the real recipe on the fixture: every weight trains (no LoRA), checkpoints
 * hold the weights and optimizer state in state.pt, and the trained model is registered as an F16 GGUF
 * of its own that `slm run` loads (Ctrl+C and --resume with --full: test/e2e/distillReal.test.ts). Short on purpose
 * (docs/distill.md has the runs that reach 95 % on sub-eval). Skipped, with the reason, without
 * SLM_TEST_PYTHON.
 */
const HF = path.join(FIXTURE, "hf");
const SUB = path.join(FIXTURE, "data", "sub-train.jsonl");
const SLOW = 300_000;
const TRAIN = ["--full", "--max-steps", "20", "--batch-size", "8", "--lr", "1e-3", "--out", "full"];

const real = realRecipe("slm finetune --full with the real recipe");
const registry = (): Registry | undefined => {
  const f = path.join(real.sb.home, "registry.json");
  return existsSync(f) ? (JSON.parse(readFileSync(f, "utf8")) as Registry) : undefined;
};

describe("slm finetune --full (CPU)", () => {
  it("trains every weight and registers a GGUF of its own that runs; checkpoints hold state.pt only", async (ctx) => {
    real.need(ctx);
    const run = path.join(real.sb.home, "runs", "tiny-arith+full");
    // Ctrl+C and --resume of a full fine-tune are exercised by test/e2e/distillReal.test.ts (--full).
    const r = await slm(["finetune", HF, "--lora", SUB, ...TRAIN, "--json"], real.sb);
    expect(r.exitCode, r.all).toBe(0);
    const ckpts = readdirSync(path.join(run, "checkpoints"));
    expect(ckpts.some((d) => /^step-\d+$/.test(d)), ckpts.join()).toBe(true);
    // A full fine-tune's checkpoint holds the whole model's weights in state.pt, and no adapter folder.
    const ckpt = path.join(run, "checkpoints", ckpts.find((d) => /^step-\d+$/.test(d))!);
    expect(readdirSync(ckpt).sort()).toEqual(["state.pt"]);
    const res = lastJson(r.stdout).data as { model: { name: string; path: string }; adapterGguf: string | null; modelDir: string; training: { steps: number } };
    expect(res.training.steps).toBe(20);
    expect(res.adapterGguf).toBeNull();
    expect(existsSync(path.join(res.modelDir, "config.json"))).toBe(true);

    const entry = registry()!.models["tiny-arith+full"]!;
    expect(entry.adapters ?? []).toEqual([]);
    expect(entry.files.map((f) => f.path)).toEqual([entry.path]);
    expect(entry.quant).toBe("F16");
    expect(entry.lineage[0]).toMatchObject({ method: "finetune-full", parameters: { hyperparameters: { full: true, kdAlpha: null }, hfModel: res.modelDir } });
    // The base GGUF converted into the run's folder (for the data summary) is not kept: the model does not use it.
    expect(existsSync(path.join(run, "base-f16.gguf"))).toBe(false);
    // The same architecture, vocabulary and metadata as the base converted the same way; every tensor trained.
    const conv = await slm(["convert", HF, "--outtype", "f16", "--json"], real.sb);
    expect(conv.exitCode, conv.all).toBe(0);
    const diffs = ggufDifferences(entry.path, (lastJson(conv.stdout).data as { model: { path: string } }).model.path);
    const tensors = readGgufHeader(entry.path).tensors.length;
    expect(diffs.filter((d) => !/^tensor \S+: data differs$/.test(d))).toEqual([]);
    expect(diffs).toHaveLength(tensors);

    const out = await slm(["run", "tiny-arith+full", "57-23", "--temperature", "0", "--max-tokens", "4"], real.sb);
    expect(out.exitCode, out.all).toBe(0);
    expect(out.stdout.trim()).toMatch(/^\d+$/);
  }, SLOW);
});
