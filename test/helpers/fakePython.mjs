#!/usr/bin/env node
// A stand-in for slm's Python environment in tests, on machines without torch/transformers/peft (the
// real recipe runs in `npm run test:gpu`). It answers the three ways slm runs Python, faithfully to
// the protocol, with the fixture's real outputs:
//   python -c <import check> MODULES…   → {} (or the modules named in FAKE_PYTHON_MISSING)
//   python convert_hf_to_gguf.py DIR --outtype T --outfile OUT
//                                        → the fixture's GGUF, which that script made from hf/
//   python -u finetune_lora.py --config CFG
//                                        → the recipe protocol's events; checkpoints every 5 steps;
//                                          SIGINT → checkpoint + exit 130; the adapter is the fixture's
//                                          PEFT adapter (trained by the real recipe's code path elsewhere);
//                                          FAKE_PYTHON_FAIL makes it fail like a crashing recipe
// FAKE_PYTHON_LOG (a folder) receives each recipe config, so tests can check what slm passed.
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const FIXTURE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "tiny-arith");
const args = process.argv.slice(2);
const out = (e) => process.stdout.write(JSON.stringify({ ...e, ts: Date.now() }) + "\n");

if (args[0] === "-c") {
  const missing = (process.env.FAKE_PYTHON_MISSING ?? "").split(",").filter(Boolean);
  const asked = args.slice(2);
  process.stdout.write(JSON.stringify(Object.fromEntries(asked.filter((m) => missing.includes(m)).map((m) => [m, `ModuleNotFoundError: No module named '${m}'`]))) + "\n");
  process.exit(0);
}

const script = args.find((a) => a.endsWith(".py"));
if (script && path.basename(script) === "convert_hf_to_gguf.py") {
  const outfile = args[args.indexOf("--outfile") + 1];
  process.stderr.write(`INFO:hf-to-gguf:Loading model: ${path.basename(args[args.indexOf(script) + 1])}\n`);
  cpSync(path.join(FIXTURE, "gguf", "tiny-arith-f32.gguf"), outfile);
  process.stderr.write(`INFO:hf-to-gguf:Model successfully exported to ${outfile}\n`);
  process.exit(0);
}

if (script && path.basename(script) === "finetune_lora.py") {
  const cfg = JSON.parse(readFileSync(args[args.indexOf("--config") + 1], "utf8"));
  if (process.env.FAKE_PYTHON_LOG) {
    mkdirSync(process.env.FAKE_PYTHON_LOG, { recursive: true });
    writeFileSync(path.join(process.env.FAKE_PYTHON_LOG, `config-${Date.now()}.json`), JSON.stringify(cfg, null, 2));
  }
  if (process.env.FAKE_PYTHON_FAIL) {
    out({ type: "step", id: "load", status: "start", title: "Load base model", detail: cfg.base });
    process.stderr.write("Traceback (most recent call last):\nRuntimeError: the fake recipe was told to fail\n");
    process.exit(1);
  }
  const ckptDir = path.join(cfg.output_dir, "checkpoints");
  const steps = cfg.max_steps ?? 20;
  const stepMs = Number(process.env.FAKE_STEP_MS ?? 20);
  let start = 0;
  let resumedFrom = null;
  if (cfg.resume && existsSync(ckptDir)) {
    const found = readdirSync(ckptDir).map((d) => Number(/^step-(\d+)$/.exec(d)?.[1])).filter(Number.isFinite).sort((a, b) => b - a);
    if (found.length) {
      start = found[0];
      resumedFrom = path.join(ckptDir, `step-${start}`);
    }
  }
  const save = (s) => {
    mkdirSync(path.join(ckptDir, `step-${s}`), { recursive: true });
    writeFileSync(path.join(ckptDir, `step-${s}`, "state.json"), JSON.stringify({ step: s }));
  };
  const examples = readFileSync(cfg.train, "utf8").trim().split("\n").length;
  out({ type: "step", id: "load", status: "start", title: "Load base model", detail: cfg.base });
  out({ type: "step", id: "load", status: "done", title: "Load base model", detail: "307,200 trainable parameters" });
  out({ type: "step", id: "data", status: "start", title: "Prepare data", detail: cfg.train });
  out({ type: "step", id: "data", status: "done", title: "Prepare data", detail: `${examples} training examples` });
  if (resumedFrom) out({ type: "log", level: "info", message: `resumed from ${resumedFrom} (step ${start} of ${steps})` });
  out({ type: "step", id: "train", status: "start", title: "Train", detail: `${steps} steps` });
  let step = start;
  let interrupted = false;
  process.on("SIGINT", () => {
    interrupted = true;
  });
  const t0 = Date.now();
  while (step < steps) {
    await new Promise((r) => setTimeout(r, stepMs));
    if (interrupted) {
      save(step);
      out({ type: "log", level: "warn", message: `interrupted at step ${step} of ${steps}; checkpoint saved in ${path.join(ckptDir, `step-${step}`)}` });
      out({ type: "step", id: "train", status: "fail", title: "Train", detail: `interrupted at step ${step}` });
      process.exit(130);
    }
    step++;
    out({ type: "progress", id: "train", unit: "steps", current: step, total: steps, rate: (step - start) / Math.max((Date.now() - t0) / 1000, 1e-3) });
    out({ type: "metric", name: "loss", value: 2 / step, step });
    out({ type: "metric", name: "tokens_per_s", value: 1000, unit: "tokens/s", step });
    if (step % 5 === 0 && step < steps) save(step);
  }
  const evalLoss = cfg.eval ? 0.05 : null;
  if (evalLoss !== null) out({ type: "metric", name: "eval_loss", value: evalLoss, step });
  out({ type: "step", id: "train", status: "done", title: "Train", detail: `${steps} steps` });
  const adapter = path.join(cfg.output_dir, "adapter");
  cpSync(path.join(FIXTURE, "lora-sub"), adapter, { recursive: true });
  let merged = null;
  if (cfg.merge) {
    merged = path.join(cfg.output_dir, "merged");
    cpSync(path.join(FIXTURE, "hf"), merged, { recursive: true });
  }
  out({ type: "result", data: { adapter_dir: adapter, merged_dir: merged, train_loss: 2 / steps, eval_loss: evalLoss, steps, epochs: 1, tokens: steps * 100, seconds: (Date.now() - t0) / 1000, peak_gpu_mem_gib: null, resumed_from: resumedFrom } });
  process.exit(0);
}

process.stderr.write(`fakePython: unexpected arguments ${JSON.stringify(args)}\n`);
process.exit(2);
