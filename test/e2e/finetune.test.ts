import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { Registry } from "../../src/backends/store/types.js";
import { FIXTURE, ROOT, type Sandbox, lastJson, sandbox, slm } from "../helpers/cli.js";

/**
 * `slm finetune` end to end through the built CLI. Python is the stand-in test/helpers/fakePython.mjs
 * (fast, and needs no torch/peft): it speaks the recipe protocol and hands back the fixture's real
 * PEFT adapter and GGUF, so everything slm does itself is real: data checks and summary, the recipe
 * config, Ctrl+C and --resume, the TypeScript adapter conversion, registration, and `slm run` on the
 * result. The real recipe is tested by finetuneReal.test.ts (with SLM_TEST_PYTHON) and `npm run test:gpu`.
 */
const FAKE = path.join(ROOT, "test", "helpers", "fakePython.mjs");
const HF = path.join(FIXTURE, "hf");
const SUB = path.join(FIXTURE, "data", "sub-train.jsonl");
const SLOW = 180_000;

let sb: Sandbox;
let log: string;

beforeAll(() => {
  chmodSync(FAKE, 0o755);
  log = mkdtempSync(path.join(tmpdir(), "slm-fakepy-"));
  // One sandbox for the file: llama.cpp's conversion scripts are unpacked into it once.
  sb = sandbox(undefined, { SLM_PYTHON: FAKE, FAKE_PYTHON_LOG: log });
});

const registry = (): Registry => {
  const f = path.join(sb.home, "registry.json");
  return existsSync(f) ? (JSON.parse(readFileSync(f, "utf8")) as Registry) : { version: 1, models: {} };
};
const runs = () => (existsSync(path.join(sb.home, "runs")) ? readdirSync(path.join(sb.home, "runs")) : []);
const env = (extra: Record<string, string>) => ({ env: { ...sb.env, ...extra } });
/** The recipe config the stand-in received last. */
const lastConfig = () => {
  const files = readdirSync(log).filter((f) => f.startsWith("config-")).sort();
  return JSON.parse(readFileSync(path.join(log, files[files.length - 1]!), "utf8")) as Record<string, unknown>;
};

interface Result {
  model: { name: string; path: string; adapters: { path: string; scale: number }[]; lineage: { method: string; from: string; parameters: Record<string, unknown> }[] };
  merged: { name: string; path: string; lineage: { method: string }[] } | null;
  runDir: string;
  peftAdapter: string;
  adapterGguf: string;
  data: { train: { count: number; min: number; max: number; median: number; format: string; overMaxSeqLen: number }; eval: { count: number } | null; maxSeqLen: number; template: string };
  training: { steps: number; resumed_from: string | null; eval_loss: number | null };
}

describe("slm finetune: what is checked before Python starts", () => {
  it("documents its options", async () => {
    const r = await slm(["finetune", "--help"], sb);
    expect(r.exitCode).toBe(0);
    for (const flag of ["--lora", "--eval-data", "--val-split", "--epochs", "--max-steps", "--lr", "--rank", "--alpha", "--dropout", "--target-modules", "--batch-size", "--grad-accum", "--max-seq-len", "--packing", "--qlora", "--seed", "--resume", "--out", "--merge", "--train-on-prompt", "--device", "--full", "--kd-alpha"]) {
      expect(r.stdout).toContain(flag);
    }
  });

  it("bad data: exit 2 with the file, the line and the problem; nothing is left behind", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "slm-ft-bad-"));
    const bad = path.join(dir, "chats.jsonl");
    writeFileSync(bad, '{"messages":[{"role":"user","content":"1+1"},{"role":"assistant","content":"2"}]}\n{"messages":[{"role":"assistant","content":"2"},{"role":"user","content":"1+1"}]}\n');
    const r = await slm(["finetune", HF, "--lora", bad], sb);
    expect(r.exitCode, r.all).toBe(2);
    expect(r.stderr).toContain('error: chats.jsonl line 2: roles out of order: message 1 is "assistant"');
    expect(r.stderr).not.toMatch(/\n\s+at /);
    const j = await slm(["finetune", HF, "--lora", bad, "--json"], sb);
    expect(lastJson(j.stdout)).toMatchObject({ type: "error", error: { exitCode: 2 } });
    expect(runs()).toEqual([]);
    expect(readdirSync(log)).toEqual([]);
  });

  it("missing --lora, unknown options and bad numbers are usage errors", async () => {
    expect((await slm(["finetune", HF], sb)).exitCode).toBe(2);
    expect((await slm(["finetune", HF, "--lora", SUB, "--lr", "fast"], sb)).stderr).toMatch(/--lr must be a number/);
    expect((await slm(["finetune", HF, "--lora", SUB, "--device", "tpu"], sb)).exitCode).toBe(2);
  });

  it("no Python environment: exit 5 naming `slm setup python`", async () => {
    const r = await slm(["finetune", HF, "--lora", SUB], sb, env({ SLM_PYTHON: "" }));
    expect(r.exitCode, r.all).toBe(5);
    expect(r.stderr).toContain("slm setup python");
    expect(runs()).toEqual([]);
  });

  it("a Python without the ML stack: exit 5 listing what is missing (bitsandbytes for --qlora)", async () => {
    const r = await slm(["finetune", HF, "--lora", SUB, "--json"], sb, env({ FAKE_PYTHON_MISSING: "torch,peft" }));
    expect(r.exitCode, r.all).toBe(5);
    const e = lastJson(r.stdout).error!;
    expect(e.message).toMatch(/Fine-tuning needs Python modules .*: torch \(ModuleNotFoundError.*\), peft/);
    expect(e.hint).toMatch(/slm setup python/);
    const q = await slm(["finetune", HF, "--lora", SUB, "--qlora"], sb, env({ FAKE_PYTHON_MISSING: "bitsandbytes" }));
    expect(q.exitCode).toBe(5);
    expect(q.stderr).toMatch(/bitsandbytes/);
    expect(runs()).toEqual([]);
  });
});

describe("slm finetune: a run with the stand-in recipe", () => {
  it(
    "summarises the data, passes the recipe its config, converts the adapter, registers <base>+<name>, and slm run uses it",
    async () => {
      const r = await slm(["finetune", HF, "--lora", SUB, "--out", "sub", "--val-split", "0.05", "--max-steps", "10", "--rank", "8", "--alpha", "16", "--json"], sb);
      expect(r.exitCode, r.all).toBe(0);
      const res = lastJson(r.stdout).data as Result;
      // 5 % of 4,050 held out. Digits are single tokens, so an example is its characters plus 4 special
      // tokens: <s><|user|>9-7<|assistant|>2</s> is 8, <s><|user|>44-38<|assistant|>6</s> is 10.
      expect(res.data.train).toMatchObject({ count: 3847, format: "messages", min: 8, max: 11, overMaxSeqLen: 0 });
      expect(res.data.eval).toMatchObject({ count: 203 });
      expect(res.data).toMatchObject({ maxSeqLen: 256, template: "GGUF metadata" });
      const events = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { type: string; id?: string; status?: string; detail?: string });
      // Work folders (models/.tmp-<pid>-…) are renamed into place: no event may name one.
      expect(r.stdout).not.toMatch(/\.tmp-\d+-/);
      expect(events.find((e) => e.id === "dataset" && e.status === "done")?.detail).toMatch(/3,847 training \+ 203 evaluation examples \(messages, chat template from GGUF metadata\); tokens min 8 · median 11 · p95 11 · max 11/);

      const cfg = lastConfig();
      expect(cfg).toMatchObject({ base: HF, output_dir: path.join(sb.home, "runs", "tiny-arith+sub"), max_steps: 10, rank: 8, alpha: 16, lr: 2e-4, max_seq_len: 256, resume: false, merge: false, target_modules: "all-linear", device: "auto", gpus: 1, train_on_prompt: false });
      expect(cfg.chat_template).toBe(JSON.parse(readFileSync(path.join(HF, "tokenizer_config.json"), "utf8")).chat_template);
      const train = readFileSync(cfg.train as string, "utf8").trim().split("\n");
      expect(train).toHaveLength(3847);
      expect(JSON.parse(train[0]!)).toEqual({ messages: [{ role: "user", content: "44-38" }, { role: "assistant", content: "6" }] });
      expect(readFileSync(cfg.eval as string, "utf8").trim().split("\n")).toHaveLength(203);

      const entry = registry().models["tiny-arith+sub"]!;
      expect(entry).toMatchObject({ format: "gguf", source: { type: "derived" }, architecture: "llama" });
      expect(entry.path).toBe(path.join(sb.home, "models", "tiny-arith+sub", "base-f16.gguf"));
      expect(entry.adapters).toEqual([{ path: path.join(sb.home, "models", "tiny-arith+sub", "adapter.gguf"), scale: 1 }]);
      expect(entry.lineage[0]).toMatchObject({ from: HF, method: "finetune-lora", parameters: { data: { file: SUB, format: "messages" }, trainLoss: 0.2, steps: 10 } });
      expect((entry.lineage[0]!.parameters.data as { sha256: string }).sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(existsSync(path.join(res.runDir, "adapter", "adapter_model.safetensors"))).toBe(true);
      expect(existsSync(path.join(res.runDir, "base-f16.gguf"))).toBe(false);

      // The registered model is the base plus the adapter: it subtracts, which the base alone cannot.
      for (const [q, a] of [["44-38", "6"], ["97-24", "73"]]) {
        const run = await slm(["run", "tiny-arith+sub", q, "--temperature", "0"], sb);
        expect(run.exitCode, run.all).toBe(0);
        expect(run.stdout.trim()).toBe(a);
      }
      // slm eval takes the registered name as a name, not as MODEL+ADAPTER ("tiny-arith" + an adapter "sub").
      const ev = await slm(["eval", "tiny-arith+sub", "--task", path.join(FIXTURE, "data", "sub-eval.jsonl"), "--limit", "20", "--no-store", "--json"], sb);
      expect(ev.exitCode, ev.all).toBe(0);
      expect((lastJson(ev.stdout).data as { models: { tasks: { score: { accuracy: { value: number } } }[] }[] }).models[0]!.tasks[0]!.score.accuracy.value).toBeGreaterThanOrEqual(0.9);
      const info = await slm(["info", "tiny-arith+sub"], sb);
      expect(info.stdout).toMatch(new RegExp(`LoRA adapters\\s+${entry.adapters![0]!.path.replace(/[.+]/g, "\\$&")}`));
      expect(info.stdout).toMatch(/lineage\s+finetune-lora of .*tiny-arith\/hf/);
    },
    SLOW,
  );

  it(
    "Ctrl+C: the recipe saves a checkpoint, nothing is registered; --resume continues from it",
    async () => {
      const args = ["finetune", HF, "--lora", SUB, "--out", "ctrlc", "--max-steps", "30", "--json"];
      const child = slm(args, sb, env({ FAKE_STEP_MS: "150" }));
      let seen = "";
      await new Promise<void>((resolve) => {
        child.stdout!.on("data", (d: Buffer) => {
          seen += d.toString();
          if (/"id":"train","unit":"steps","current":7/.test(seen)) resolve();
        });
      });
      child.kill("SIGINT");
      const r = await child;
      expect(r.exitCode, r.all).toBe(130);
      const e = lastJson(r.stdout).error!;
      expect(e.message).toMatch(/checkpoint/);
      expect(e.hint).toMatch(/--resume/);
      expect(registry().models["tiny-arith+ctrlc"]).toBeUndefined();
      const ckpts = readdirSync(path.join(sb.home, "runs", "tiny-arith+ctrlc", "checkpoints"));
      expect(ckpts.length).toBeGreaterThan(0);

      const again = await slm(args, sb);
      expect(again.exitCode).toBe(2);
      expect(lastJson(again.stdout).error!.message).toMatch(/An interrupted run named tiny-arith\+ctrlc/);
      const changed = await slm([...args, "--resume", "--lr", "1e-3"], sb);
      expect(changed.exitCode).toBe(2);
      expect(lastJson(changed.stdout).error!.message).toMatch(/--lr: 0.0002 then, 0.001 now/);

      const resumed = await slm([...args, "--resume"], sb);
      expect(resumed.exitCode, resumed.all).toBe(0);
      const res = lastJson(resumed.stdout).data as Result;
      expect(res.training.resumed_from).toMatch(/checkpoints\/step-\d+$/);
      expect(lastConfig()).toMatchObject({ resume: true });
      expect(registry().models["tiny-arith+ctrlc"]).toBeDefined();
    },
    SLOW,
  );

  it(
    "--merge registers the merged model too, with its lineage",
    async () => {
      const r = await slm(["finetune", HF, "--lora", SUB, "--out", "m", "--max-steps", "3", "--merge", "--json"], sb);
      expect(r.exitCode, r.all).toBe(0);
      const res = lastJson(r.stdout).data as Result;
      expect(res.merged?.name).toBe("tiny-arith+m-merged");
      const m = registry().models["tiny-arith+m-merged"]!;
      expect(existsSync(m.path)).toBe(true);
      expect(m.lineage.map((s) => s.method)).toEqual(["merge-lora", "finetune-lora"]);
      expect(lastConfig()).toMatchObject({ merge: true });
    },
    SLOW,
  );

  it(
    "a failing recipe: exit 6 with its stderr, and no run folder or entry left",
    async () => {
      const r = await slm(["finetune", HF, "--lora", SUB, "--out", "fails"], sb, env({ FAKE_PYTHON_FAIL: "1" }));
      expect(r.exitCode, r.all).toBe(6);
      expect(r.stderr).toMatch(/the fake recipe was told to fail/);
      expect(runs()).not.toContain("tiny-arith+fails");
      expect(registry().models["tiny-arith+fails"]).toBeUndefined();
      expect(readdirSync(path.join(sb.home, "models")).filter((d) => d.startsWith(".tmp-"))).toEqual([]);
    },
    SLOW,
  );

  it(
    "the built-in model fine-tunes by name: trains on the HF weights that ship with slm, runs on its built-in GGUF",
    async () => {
      const r = await slm(["finetune", "tiny-arith", "--lora", SUB, "--out", "byname", "--max-steps", "3", "--json"], sb);
      expect(r.exitCode, r.all).toBe(0);
      expect(lastConfig()).toMatchObject({ base: path.join(ROOT, "models", "tiny-arith", "hf") });
      const entry = registry().models["tiny-arith+byname"]!;
      expect(entry.path).toBe(path.join(ROOT, "models", "tiny-arith-f16.gguf"));
      expect(entry.lineage[0]).toMatchObject({ from: "tiny-arith", method: "finetune-lora" });
      const run = await slm(["run", "tiny-arith+byname", "44-38", "--temperature", "0"], sb);
      expect(run.exitCode, run.all).toBe(0);
      expect(run.stdout.trim()).toBe("6");
    },
    SLOW,
  );

  it(
    "plain output: steps, the data summary, and the result on stdout",
    async () => {
      const r = await slm(["finetune", HF, "--lora", SUB, "--out", "plain", "--max-steps", "3"], sb);
      expect(r.exitCode, r.all).toBe(0);
      expect(r.stderr).toMatch(/✓ Reading the data \(sub-train\.jsonl\) \(4,050 training examples/);
      expect(r.stderr).toMatch(/✓ Train \(3 steps\)/);
      expect(r.stderr).toMatch(/step 3\/3 \(100%\)/);
      expect(r.stdout).toMatch(/^tiny-arith\+plain: train loss 0\.6667, 3 steps/);
      expect(r.stdout).toContain('Try it: slm run tiny-arith+plain "…"');
    },
    SLOW,
  );
});
