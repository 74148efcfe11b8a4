import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolveFinetuneBase } from "../../src/backends/finetune/base.js";
import { recipeConfig, resumeConflicts } from "../../src/backends/finetune/config.js";
import { settingsOf } from "../../src/backends/finetune/options.js";
import { planFinetune } from "../../src/backends/finetune/plan.js";
import { checkResume, type RunRecord } from "../../src/backends/finetune/run.js";
import { registerModel } from "../../src/backends/store/registry.js";
import type { ModelEntry } from "../../src/backends/store/types.js";
import { UsageError } from "../../src/core/errors.js";
import { FIXTURE } from "../helpers/cli.js";

const HF = path.join(FIXTURE, "hf");
const SUB = path.join(FIXTURE, "data", "sub-train.jsonl");
const before = process.env.SLM_HOME;
let home: string;

beforeAll(() => {
  home = mkdtempSync(path.join(tmpdir(), "slm-ft-plan-"));
  process.env.SLM_HOME = home;
});
afterAll(() => {
  if (before === undefined) delete process.env.SLM_HOME;
  else process.env.SLM_HOME = before;
});

const entry = (name: string, format: "gguf" | "hf", repo: string, extra: Partial<ModelEntry> = {}): ModelEntry => ({
  name,
  format,
  path: `/cache/${name}`,
  files: [],
  source: { type: "hub", repo, revision: "main", commit: "c0ffee", endpoint: "http://hub" },
  size: 1,
  lineage: [],
  createdAt: "2026-01-01T00:00:00Z",
  ...extra,
});

function usage(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    return (err as Error).message + ((err as UsageError).hint ? `\nhint: ${(err as UsageError).hint}` : "");
  }
  throw new Error("no usage error");
}

describe("planning a fine-tune", () => {
  it("names the run <base>+<data file> and reads the data before anything runs", () => {
    const p = planFinetune({ ref: HF, data: SUB });
    expect(p.name).toBe("tiny-arith+sub-train");
    expect(p.base).toEqual({ name: "tiny-arith", from: HF, hf: HF });
    expect(p.runDir).toBe(path.join(home, "runs", "tiny-arith+sub-train"));
    expect(p.runState).toBe("fresh");
    expect(p.train.examples).toHaveLength(4050);
    expect(p.eval).toBeUndefined();
    expect(p.mergedName).toBeUndefined();
    expect(planFinetune({ ref: HF, data: SUB, out: "sub", merge: true })).toMatchObject({ name: "tiny-arith+sub", mergedName: "tiny-arith+sub-merged" });
  });

  it("holds out --val-split of the data, or reads --eval-data", () => {
    const p = planFinetune({ ref: HF, data: SUB, valSplit: 0.1 });
    expect(p.train.examples).toHaveLength(3645);
    expect(p.eval!.examples).toHaveLength(405);
    const e = planFinetune({ ref: HF, data: SUB, evalData: path.join(FIXTURE, "data", "sub-eval.jsonl") });
    expect(e.eval!.examples).toHaveLength(500);
  });

  it("builds the recipe config of the protocol, every key and nothing else", () => {
    const s = settingsOf({ ref: HF, data: SUB, rank: 8, alpha: 16, targetModules: "q_proj, v_proj,q_proj", maxSteps: 100, lr: 1e-3 });
    const c = recipeConfig(s, { hf: HF, trainFile: "/r/data/train.jsonl", evalFile: null, runDir: "/r", chatTemplate: "T", maxSeqLen: 256, resume: false, merge: true });
    expect(c).toEqual({
      base: HF,
      train: "/r/data/train.jsonl",
      eval: null,
      output_dir: "/r",
      chat_template: "T",
      train_on_prompt: false,
      epochs: 3,
      max_steps: 100,
      lr: 1e-3,
      rank: 8,
      alpha: 16,
      dropout: 0,
      target_modules: ["q_proj", "v_proj"],
      batch_size: 8,
      grad_accum: 1,
      max_seq_len: 256,
      packing: false,
      qlora: false,
      seed: 42,
      resume: false,
      merge: true,
      device: "auto",
      gpus: 1,
      full: false,
      kd_alpha: null,
    });
    expect(settingsOf({ ref: HF, data: SUB }).targetModules).toBe("all-linear");
    expect(settingsOf({ ref: HF, data: SUB, gpus: 4 }).gpus).toBe(4);
  });

  it("refuses bad and conflicting options with the flag's name", () => {
    const plan = (o: object) => usage(() => planFinetune({ ref: HF, data: SUB, ...o }));
    expect(plan({ evalData: SUB, valSplit: 0.1 })).toMatch(/--eval-data or --val-split, not both/);
    expect(plan({ valSplit: 1 })).toMatch(/--val-split must be a fraction/);
    expect(plan({ qlora: true, device: "cpu" })).toMatch(/--qlora .* needs a CUDA GPU/);
    expect(plan({ rank: 0 })).toMatch(/--rank must be a positive whole number/);
    expect(plan({ lr: -1 })).toMatch(/--lr must be a positive number/);
    expect(plan({ dropout: 1 })).toMatch(/--dropout must be at least 0 and below 1/);
    expect(plan({ seed: 1.5 })).toMatch(/--seed must be a whole number/);
    expect(plan({ targetModules: "q_proj,v-proj" })).toMatch(/"v-proj" is not one/);
    expect(plan({ out: "a/b" })).toMatch(/cannot be a fine-tune's name/);
    expect(plan({ device: "tpu" })).toMatch(/--device must be one of auto, cpu, cuda/);
    expect(plan({ gpus: 0 })).toMatch(/--gpus must be a positive whole number/);
    expect(plan({ full: true, rank: 8, alpha: 16 })).toMatch(/--rank, --alpha set the LoRA adapter, which --full does not train/);
    expect(plan({ full: true, qlora: true })).toMatch(/--full .* cannot train the 4-bit model of --qlora/);
    expect(plan({ full: true, merge: true })).toMatch(/no adapter to --merge/);
    expect(plan({ kdAlpha: 1.5 })).toMatch(/--kd-alpha must be between 0 and 1/);
  });

  it("distils token-level only from data with the teacher's log-probabilities: --kd-alpha 0.5 by default there, refused elsewhere", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "slm-ft-kd-"));
    const kd = path.join(dir, "kd.jsonl");
    const teacher = { tokens: [287, 2], top_ids: [[287, 281], [2, 287]], top_logprobs: [[-0.01, -4.6], [0, -14]] };
    writeFileSync(kd, JSON.stringify({ messages: [{ role: "user", content: "44-38" }, { role: "assistant", content: "6" }], teacher }) + "\n");
    expect(planFinetune({ ref: HF, data: kd, out: "kd1" }).settings.kdAlpha).toBe(0.5);
    expect(planFinetune({ ref: HF, data: kd, out: "kd2", kdAlpha: 0 }).settings.kdAlpha).toBe(0);
    expect(planFinetune({ ref: HF, data: SUB, out: "seq" }).settings.kdAlpha).toBeNull();
    const refused = usage(() => planFinetune({ ref: HF, data: SUB, kdAlpha: 0.5 }));
    expect(refused).toMatch(/--kd-alpha needs the teacher's log-probabilities in the data, and no example of .*sub-train\.jsonl has a "teacher" field/);
    expect(refused).toMatch(/hint: .*slm distill --kd-logprobs K.*drop --kd-alpha/);
    const c = recipeConfig(planFinetune({ ref: HF, data: kd, out: "kd3", full: true }).settings, { hf: HF, trainFile: "/t", evalFile: null, runDir: "/r", chatTemplate: null, maxSeqLen: 64, resume: false, merge: false });
    expect([c.full, c.kd_alpha]).toEqual([true, 0.5]);
  });

  it("reports bad data as a usage error naming the file and line", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "slm-ft-data-"));
    const bad = path.join(dir, "bad.jsonl");
    writeFileSync(bad, '{"messages":[{"role":"user","content":"1+1"},{"role":"assistant","content":"2"}]}\n{"messages":[{"role":"user","content":"2+2"}]}\n');
    expect(usage(() => planFinetune({ ref: HF, data: bad }))).toMatch(/^bad\.jsonl line 2: no assistant turn/);
    expect(usage(() => planFinetune({ ref: HF, data: SUB, evalData: bad }))).toMatch(/bad\.jsonl line 2/);
  });

  it("refuses a taken name, and models without HF weights", async () => {
    await registerModel(entry("tiny-arith+taken", "gguf", "x/y", { source: { type: "derived" } }));
    expect(usage(() => planFinetune({ ref: HF, data: SUB, out: "taken" }))).toMatch(/"tiny-arith\+taken" is already registered/);
    // The built-in model trains on the HF weights that ship with it: no repo-relative path to find.
    expect(planFinetune({ ref: "tiny-arith", data: SUB })).toMatchObject({ name: "tiny-arith+sub-train", base: { hf: expect.stringMatching(/models\/tiny-arith\/hf$/) } });
    expect(usage(() => planFinetune({ ref: path.join(FIXTURE, "gguf", "tiny-arith-f32.gguf"), data: SUB }))).toMatch(/is a GGUF file; fine-tuning needs the model's Hugging Face weights/);
    await registerModel(entry("tiny-arith+taken2", "gguf", "x/y", { source: { type: "derived" }, adapters: [{ path: "/a.gguf", scale: 1 }] }));
    expect(usage(() => planFinetune({ ref: "tiny-arith+taken2", data: SUB }))).toMatch(/base model with a LoRA adapter/);
  });

  it("knows interrupted, stale and missing runs", () => {
    const dir = path.join(home, "runs", "tiny-arith+sub-train");
    // The run's name comes from the data file unless --out says otherwise, for --resume as well.
    expect(usage(() => planFinetune({ ref: HF, data: SUB, resume: true }))).toMatch(/Nothing to resume: no interrupted run named tiny-arith\+sub-train/);
    mkdirSync(path.join(dir, "data"), { recursive: true });
    expect(planFinetune({ ref: HF, data: SUB }).runState).toBe("stale");
    mkdirSync(path.join(dir, "checkpoints", "step-20"), { recursive: true });
    expect(usage(() => planFinetune({ ref: HF, data: SUB }))).toMatch(/An interrupted run named tiny-arith\+sub-train[\s\S]*--resume/);
    expect(planFinetune({ ref: HF, data: SUB, resume: true }).runState).toBe("resume");
    // A finished run whose model was removed: neither resumed nor overwritten.
    writeFileSync(path.join(dir, "run.json"), JSON.stringify({ version: 1, name: "tiny-arith+sub-train", finishedAt: "2026-01-01T00:00:00Z" }));
    expect(usage(() => planFinetune({ ref: HF, data: SUB }))).toMatch(/A finished run named tiny-arith\+sub-train/);
    expect(usage(() => planFinetune({ ref: HF, data: SUB, out: "sub-train", resume: true }))).toMatch(/Nothing to resume/);
  });

  it("refuses to resume with other data or settings", () => {
    const s = settingsOf({ ref: HF, data: SUB });
    const c = recipeConfig(s, { hf: HF, trainFile: "/r/t", evalFile: null, runDir: "/r", chatTemplate: null, maxSeqLen: 256, resume: false, merge: false });
    const rec = (config = c, sha = "a", valSplit: number | null = null): RunRecord => ({ version: 1, name: "n", config, data: { train: { file: SUB, sha256: sha }, eval: null, valSplit }, createdAt: "" });
    expect(() => checkResume(rec(), rec({ ...c, merge: true, device: "cuda", resume: true }))).not.toThrow();
    expect(resumeConflicts(c, { ...c, lr: 1e-3, rank: 4 })).toEqual(["--lr: 0.0002 then, 0.001 now", "--rank: 16 then, 4 now"]);
    // --batch-size is per process: another process count would train other batches.
    expect(resumeConflicts(c, { ...c, gpus: 2 })).toEqual(["--gpus: 1 then, 2 now"]);
    const msg = usage(() => checkResume(rec(), rec({ ...c, lr: 1e-3 }, "b", 0.1)));
    expect(msg).toMatch(/--val-split: null then, 0.1 now/);
    expect(msg).toMatch(/the training data changed/);
    expect(msg).toMatch(/--lr: 0.0002 then, 0.001 now/);
  });
});

describe("the base of a fine-tune", () => {
  it("a catalog model: its registered GGUF for inference, its HF repo pulled for training", async () => {
    await registerModel(entry("qwen2.5-0.5b", "gguf", "Qwen/Qwen2.5-0.5B-Instruct-GGUF"));
    const b = resolveFinetuneBase("qwen2.5-0.5b");
    expect(b).toMatchObject({ name: "qwen2.5-0.5b", from: "qwen2.5-0.5b", pull: "qwen2.5-0.5b" });
    expect(b.gguf?.name).toBe("qwen2.5-0.5b");
    await registerModel(entry("qwen2.5-0.5b:hf", "hf", "Qwen/Qwen2.5-0.5B-Instruct"));
    expect(resolveFinetuneBase("qwen2.5-0.5b")).toMatchObject({ name: "qwen2.5-0.5b", hf: "/cache/qwen2.5-0.5b:hf" });
    expect(resolveFinetuneBase("qwen2.5-0.5b:hf")).toMatchObject({ name: "qwen2.5-0.5b", hf: "/cache/qwen2.5-0.5b:hf", gguf: { name: "qwen2.5-0.5b" } });
  });

  it("a Hub repository: pulled in HF format, or used as registered", async () => {
    expect(resolveFinetuneBase("someorg/Some-Model")).toEqual({ name: "Some-Model", from: "someorg/Some-Model", pull: "someorg/Some-Model" });
    expect(usage(() => resolveFinetuneBase("someorg/Some-Model-GGUF:Q4_K_M"))).toMatch(/names a GGUF file/);
    await registerModel(entry("org/My-Model", "hf", "org/My-Model"));
    expect(resolveFinetuneBase("org/My-Model")).toEqual({ name: "My-Model", from: "org/My-Model", hf: "/cache/org/My-Model", gguf: undefined });
    await registerModel(entry("org/Other-GGUF", "gguf", "org/Other-GGUF"));
    expect(usage(() => resolveFinetuneBase("org/Other-GGUF"))).toMatch(/GGUF file only/);
  });

  it("refuses GPTQ and AWQ checkpoints, registered or as folders: LoRA needs the unquantized weights", async () => {
    await registerModel(entry("org/Model-GPTQ", "gptq" as "hf", "org/Model-GPTQ"));
    expect(usage(() => resolveFinetuneBase("org/Model-GPTQ"))).toMatch(/org\/Model-GPTQ holds GPTQ-packed weights; fine-tuning needs the model's unquantized Hugging Face weights/);
    const dir = path.join(home, "tiny-arith-AWQ");
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, "config.json"), JSON.stringify({ quantization_config: { quant_method: "awq", bits: 4, group_size: 128, version: "gemm" } }));
    expect(usage(() => resolveFinetuneBase(dir))).toMatch(/holds AWQ-packed weights/);
  });

  it("a registered full fine-tune trains on from the HF weights its run kept; a LoRA fine-tune's GGUF does not", async () => {
    await registerModel(entry("tiny-arith+ft", "gguf", "x/y", { source: { type: "derived" }, lineage: [{ from: HF, method: "finetune-full", parameters: { hfModel: HF }, at: "2026-01-01T00:00:00Z" }] }));
    expect(resolveFinetuneBase("tiny-arith+ft")).toMatchObject({ name: "tiny-arith-ft", from: "tiny-arith+ft", hf: HF, gguf: { name: "tiny-arith+ft" } });
    await registerModel(entry("tiny-arith+gone", "gguf", "x/y", { source: { type: "derived" }, lineage: [{ from: HF, method: "finetune-full", parameters: { hfModel: path.join(home, "removed") }, at: "2026-01-01T00:00:00Z" }] }));
    expect(usage(() => resolveFinetuneBase("tiny-arith+gone"))).toMatch(/GGUF file only/);
  });

  it("a -merged model trains on from the merged HF weights its run kept, its own GGUF as the base at inference", async () => {
    const merged = path.join(home, "runs", "tiny-arith+sub", "merged");
    mkdirSync(merged, { recursive: true });
    await registerModel(entry("tiny-arith+sub-merged", "gguf", "x", { source: { type: "derived" }, lineage: [{ from: "tiny-arith+sub", method: "merge-lora", parameters: { mergedHf: merged }, at: "2026-01-01T00:00:00Z" }] }));
    expect(resolveFinetuneBase("tiny-arith+sub-merged")).toMatchObject({ name: "tiny-arith-sub-merged", from: "tiny-arith+sub-merged", hf: merged, gguf: { name: "tiny-arith+sub-merged" } });
  });

  it("names folders by the model, not by what they hold (store/naming.ts), and the built-in by its name", () => {
    expect(resolveFinetuneBase(HF)).toMatchObject({ name: "tiny-arith", hf: HF });
    expect(resolveFinetuneBase("tiny-arith")).toMatchObject({ name: "tiny-arith", from: "tiny-arith", hf: expect.stringMatching(/models\/tiny-arith\/hf$/), gguf: { name: "tiny-arith", source: { type: "builtin" } } });
  });
});
