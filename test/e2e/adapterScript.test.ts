import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, type TestContext } from "vitest";
import { convertPeftAdapter } from "../../src/backends/adapters/convert.js";
import { readGgufHeader } from "../../src/backends/gguf/reader.js";
import type { SlmEvent } from "../../src/core/events.js";
import { CancelledError } from "../../src/core/errors.js";
import { exec } from "../../src/core/exec.js";
import { finetunePythonForTests } from "../helpers/python.js";

/**
 * A LoRA adapter outside the llama family goes through llama.cpp's convert_lora_to_gguf.py
 * (src/backends/adapters/fallback.ts): a tiny random Qwen2 and a PEFT adapter on it, made here with
 * transformers and peft, converted in-process with that Python as SLM_PYTHON. Skipped by name without
 * a Python that has the stack (SLM_TEST_PYTHON, as .ci/run sets it).
 */
const SLOW = 300_000;
const MAKE = `
import sys, torch
from transformers import Qwen2Config, AutoModelForCausalLM
from peft import LoraConfig, get_peft_model
out = sys.argv[1]
cfg = Qwen2Config(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=True)
torch.manual_seed(0)
m = AutoModelForCausalLM.from_config(cfg)
m.save_pretrained(out + "/base")
get_peft_model(m, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)).save_pretrained(out + "/adapter")
`;

const work = mkdtempSync(path.join(tmpdir(), "slm-adapter-script-"));
let python: string | undefined;
let skip: string | undefined;
const saved = { python: process.env.SLM_PYTHON, home: process.env.SLM_HOME };

beforeAll(async () => {
  const p = await finetunePythonForTests();
  python = p.python;
  skip = p.skip;
  if (!python) return process.stderr.write(`[tests] skipping the convert_lora_to_gguf.py fallback: ${skip}\n`);
  await exec(python, ["-c", MAKE, work], { timeoutMs: 240_000, env: { OMP_NUM_THREADS: "1" } });
  process.env.SLM_PYTHON = python;
  process.env.SLM_HOME = path.join(work, "home");
}, SLOW);

afterAll(() => {
  for (const [k, v] of [["SLM_PYTHON", saved.python], ["SLM_HOME", saved.home]] as const) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  rmSync(work, { recursive: true, force: true });
});

function needPython(ctx: TestContext): void {
  if (!python) ctx.skip(skip);
}

describe("LoRA adapters of other architectures: llama.cpp's convert_lora_to_gguf.py", () => {
  it("converts a Qwen2 adapter with the script, streams its output as logs, and leaves only the finished file", async (ctx) => {
    needPython(ctx);
    const events: SlmEvent[] = [];
    const outDir = path.join(work, "out");
    const r = await convertPeftAdapter({ adapterDir: path.join(work, "adapter"), out: path.join(outDir, "qwen-lora.gguf"), baseConfig: path.join(work, "base") }, { onEvent: (e) => events.push(e) });
    // Two layers × (q_proj, v_proj) × (A, B).
    expect(r).toMatchObject({ converter: "python", architecture: "qwen2", tensors: 8, alpha: 8 });
    const meta = readGgufHeader(r.path).metadata;
    expect(meta.get("general.type")).toBe("adapter");
    expect(meta.get("adapter.type")).toBe("lora");
    expect(readdirSync(outDir)).toEqual(["qwen-lora.gguf"]);
    expect(events.some((e) => e.type === "log" && /not in the llama family/.test(e.message))).toBe(true);
    expect(events.filter((e) => e.type === "log" && e.level === "debug").length).toBeGreaterThan(0);
  }, SLOW);

  it("Ctrl+C during the script: cancelled, and no file or temporary folder is left", async (ctx) => {
    needPython(ctx);
    const outDir = path.join(work, "stopped");
    const abort = new AbortController();
    const run = convertPeftAdapter({ adapterDir: path.join(work, "adapter"), out: path.join(outDir, "qwen-lora.gguf"), baseConfig: path.join(work, "base") }, {
      signal: abort.signal,
      // The script's first line of output: it has started and written nothing whole yet.
      onEvent: (e) => {
        if (e.type === "log" && e.level === "debug") abort.abort();
      },
    });
    await expect(run).rejects.toBeInstanceOf(CancelledError);
    expect(readdirSync(outDir)).toEqual([]);
  }, SLOW);
});
