import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it, type TestContext } from "vitest";
import type { ModelEntry } from "../../src/backends/store/types.js";
import { BIN, FIXTURE, interruptWhen, lastJson, registry, ROOT, sandbox, type Sandbox, slm } from "../helpers/cli.js";
import { type HubServer, repoFromDir, startHubServer } from "../helpers/hubServer.js";
import { llamaCppToolsForTests } from "../helpers/llamaCppTools.js";
import { convertPythonForTests } from "../helpers/python.js";
import { listening } from "../helpers/serveProcess.js";

/**
 * Hugging Face, GPTQ and AWQ folders run in slm through a GGUF converted from them once and registered
 * as <name>-F16 (src/backends/convert/runnable.ts). One sandbox for the file, so each conversion is made
 * once and reused by the tests after it, as a user's would be.
 */
const HF = path.join(FIXTURE, "hf");
const ADD_EVAL = path.join(FIXTURE, "data", "add-eval.jsonl");
const RECIPE = path.join(ROOT, "recipes", "quantize_hf.py");
const SLOW = 180_000;

/** The registered GGUF files converted from `from` (a name, or a folder's absolute path). */
function conversionsFrom(box: Sandbox, from: string): ModelEntry[] {
  return Object.values(registry(box).models).filter((m) => m.lineage[0]?.method === "convert" && m.lineage[0].from === from);
}

/**
 * A 4-bit, group-size-64 checkpoint of tiny-arith in `method`'s standard format, made by slm's own recipe
 * (round-to-nearest on GPTQ's grid for GPTQ: quick, and what the way back reads is the format).
 */
async function quantizedFolder(python: string, method: "rtn" | "awq", out: string): Promise<void> {
  const config = {
    task: "quantize", model: HF, output_dir: out, method, output: "packed", bits: 4, group_size: 64,
    calibration: { file: path.join(FIXTURE, "data", "eval-text.txt"), format: "text" }, samples: 4, seq_len: 64, device: "cpu", threads: 1,
  };
  const dir = mkdtempSync(path.join(tmpdir(), "slm-quant-config-"));
  writeFileSync(path.join(dir, "config.json"), JSON.stringify(config));
  const r = await execa(python, [RECIPE, "--config", path.join(dir, "config.json")], { reject: false, env: { OMP_NUM_THREADS: "1" } });
  if (r.exitCode !== 0) throw new Error(`quantize_hf.py ${method} failed:\n${r.stderr}`);
}

describe("running Hugging Face folders through a GGUF converted once", () => {
  let python: string | undefined;
  let skipReason: string | undefined;
  let sb: Sandbox;
  let hub: HubServer | undefined;
  let work: string;

  beforeAll(async () => {
    const p = await convertPythonForTests();
    python = p.python;
    skipReason = p.skip;
    if (skipReason) process.stderr.write(`[tests] skipping the one-time conversions: ${skipReason}\n`);
    work = mkdtempSync(path.join(tmpdir(), "slm-hf-folders-"));
    sb = sandbox(undefined, python ? { SLM_PYTHON: python } : {});
  });
  afterAll(() => hub?.close());

  function needPython(ctx: TestContext): void {
    if (!python) ctx.skip(skipReason);
  }

  function needRecipe(ctx: TestContext): void {
    needPython(ctx);
    if (!existsSync(RECIPE)) ctx.skip(`${RECIPE} is not in this checkout yet`);
  }

  it("without a Python environment: run, eval and serve exit 5 naming `slm setup python`, nothing registered", async () => {
    const bare = sandbox(undefined, { SLM_PYTHON: "" });
    for (const args of [["run", HF, "12+34"], ["eval", HF, "--task", ADD_EVAL, "--limit", "2"], ["serve", HF, "--port", "0"]]) {
      const r = await slm(args, bare);
      expect(r.exitCode, `${args[0]}: ${r.all}`).toBe(5);
      expect(r.stderr).toContain("No Python environment for slm");
      expect(r.stderr).toContain("slm setup python");
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    expect(registry(bare).models).toEqual({});
    expect(existsSync(path.join(bare.home, "models")) ? readdirSync(path.join(bare.home, "models")) : []).toEqual([]);
  });

  it("Ctrl+C during the one-time conversion: exit 130, no GGUF, no registry entry, and the next run converts", async (ctx) => {
    needPython(ctx);
    const child = slm(["run", HF, "12+34", "-t", "0", "--json"], sb);
    interruptWhen(child, /"convert:run"/);
    const r = await child;
    expect(r.exitCode, r.all).toBe(130);
    expect(registry(sb).models).toEqual({});
    const models = path.join(sb.home, "models");
    expect(existsSync(models) ? readdirSync(models) : []).toEqual([]);
  }, SLOW);

  it("`slm run <HF folder>` converts it once (two runs at once included), registers <name>-F16, answers; a later run converts nothing", async (ctx) => {
    needPython(ctx);
    const both = await Promise.all([slm(["run", HF, "12+34", "-t", "0"], sb), slm(["run", HF, "12+34", "-t", "0"], sb)]);
    for (const r of both) {
      expect(r.exitCode, r.all).toBe(0);
      expect(r.stdout.trim()).toBe("46");
    }
    const converters = both.filter((r) => r.stderr.includes("converted"));
    expect(converters).toHaveLength(1);
    const first = converters[0]!;
    expect(first.stderr).toContain(`converted ${HF} to GGUF F16 once: tiny-arith-F16 (`);
    expect(first.stderr).toContain("`slm quantize tiny-arith-F16 --type Q4_K_M` makes it small");
    const [gguf] = conversionsFrom(sb, HF);
    expect(gguf).toMatchObject({ name: "tiny-arith-F16", format: "gguf", quant: "F16", source: { type: "derived" } });
    expect(gguf!.lineage[0]!.parameters).toMatchObject({ outtype: "f16", dequantized: null, tool: "convert_hf_to_gguf.py" });
    expect((gguf!.lineage[0]!.parameters.sourceFiles as { file: string }[]).map((f) => f.file)).toContain("model.safetensors");

    const second = await slm(["run", HF, "12+34", "-t", "0"], sb);
    expect(second.exitCode, second.all).toBe(0);
    expect(second.stdout.trim()).toBe("46");
    expect(second.stderr).not.toMatch(/Converting|converted/);
    expect(conversionsFrom(sb, HF)).toEqual([gguf]);
  }, SLOW);

  it("eval and serve of the same folder use that registered F16: no second conversion", async (ctx) => {
    needPython(ctx);
    // Which conversion, made when: eval adds its scores to the entry, nothing else may change.
    const made = () => conversionsFrom(sb, HF).map((m) => [m.name, m.path, m.createdAt]);
    const before = made();
    expect(before.map(([name]) => name)).toEqual(["tiny-arith-F16"]);
    const ev = await slm(["eval", HF, "--task", ADD_EVAL, "--limit", "5", "--json"], sb);
    expect(ev.exitCode, ev.all).toBe(0);
    expect(ev.stdout).not.toMatch(/"convert:run"/);
    expect(JSON.stringify(lastJson(ev.stdout).data)).toContain("tiny-arith-F16");
    // Perplexity and KL divergence load the same F16, the folder as model and as --kld-base alike.
    const kld = await slm(["eval", HF, "--perplexity", path.join(FIXTURE, "data", "eval-text.txt"), "--kld-base", HF, "--json"], sb);
    expect(kld.exitCode, kld.all).toBe(0);
    const scored = (lastJson(kld.stdout).data as { models: { model: string; kld: { mean: number; base: string } }[] }).models[0]!;
    expect(scored).toMatchObject({ model: "tiny-arith-F16", kld: { mean: 0, base: "tiny-arith-F16" } });

    const proc = execa("node", [BIN, "serve", HF, "--port", "0", "--threads", "1"], { env: sb.env, extendEnv: true, reject: false });
    try {
      const { url } = await listening(proc);
      const answer = await fetch(`${url}/v1/chat/completions`, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ model: HF, messages: [{ role: "user", content: "12+34" }], temperature: 0, max_tokens: 8 }),
      });
      expect(answer.status).toBe(200);
      expect(((await answer.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content.trim()).toBe("46");
    } finally {
      proc.kill("SIGINT");
      await proc;
    }
    expect(made()).toEqual(before);
  }, SLOW);

  describe("GPTQ and AWQ checkpoints", () => {
    let gptq: string;

    beforeAll(async () => {
      if (!python || !existsSync(RECIPE)) return;
      gptq = path.join(work, "tiny-arith-GPTQ-4bit");
      await quantizedFolder(python, "rtn", gptq);
    }, SLOW);

    it("a local GPTQ folder: format gptq with its quantization, runs through one conversion, info links the GGUF", async (ctx) => {
      needRecipe(ctx);
      const info = await slm(["info", gptq, "--json"], sb);
      expect(info.exitCode, info.all).toBe(0);
      const before = lastJson(info.stdout).data as { model: ModelEntry; converted?: unknown };
      expect(before.model).toMatchObject({ format: "gptq", path: gptq, quantization: { method: "gptq", bits: 4, groupSize: 64, format: "gptq" } });
      expect(before.converted).toBeUndefined();

      const r = await slm(["run", gptq, "12+34", "-t", "0"], sb);
      expect(r.exitCode, r.all).toBe(0);
      expect(r.stdout.trim()).toBe("46");
      expect(r.stderr).toMatch(/converted .*tiny-arith-GPTQ-4bit to GGUF F16 once: tiny-arith-GPTQ-4bit-F16 \(.*× the 4-bit GPTQ folder\)/);
      const [gguf] = conversionsFrom(sb, gptq);
      expect(gguf!.lineage[0]!.parameters).toMatchObject({ outtype: "f16", dequantized: "gptq", quantization: { method: "gptq", bits: 4 } });

      const after = await slm(["info", gptq, "--json"], sb);
      expect((lastJson(after.stdout).data as { converted?: unknown }).converted).toEqual({ name: "tiny-arith-GPTQ-4bit-F16", path: gguf!.path, current: true });
      const text = await slm(["info", gptq], sb);
      expect(text.stdout).toMatch(/^format +gptq /m);
      // Counted as the model's weights (in × out per linear), not as the packed int32 words.
      expect(text.stdout).toMatch(/^parameters +3\.3M \(3,311,872\)$/m);
      expect(text.stdout).toMatch(/^runs as +tiny-arith-GPTQ-4bit-F16 \(GGUF converted from it\)/m);
    }, SLOW);

    it("`slm pull <GPTQ repo> --format hf` registers format gptq, and it runs", async (ctx) => {
      needRecipe(ctx);
      hub = await startHubServer({ repos: [repoFromDir("acme/tiny-arith-GPTQ", gptq)] });
      const box = { ...sb, env: { ...sb.env, HF_ENDPOINT: hub.url } };
      const pull = await slm(["pull", "acme/tiny-arith-GPTQ", "--format", "hf", "--json"], box);
      expect(pull.exitCode, pull.all).toBe(0);
      const model = registry(box).models["acme/tiny-arith-GPTQ"]!;
      expect(model).toMatchObject({ format: "gptq", quantization: { method: "gptq", bits: 4, groupSize: 64 } });
      expect(model.files.map((f) => f.repoPath)).toEqual(expect.arrayContaining(["config.json", "model.safetensors", "quantize_config.json", "tokenizer.model"]));

      // A server never converts on a request: a registered GPTQ model not converted yet is a clear 409.
      const proc = execa("node", [BIN, "serve", "--port", "0", "--threads", "1"], { env: box.env, extendEnv: true, reject: false });
      try {
        const { url } = await listening(proc);
        const answer = await fetch(`${url}/v1/chat/completions`, {
          method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ model: "acme/tiny-arith-GPTQ", messages: [{ role: "user", content: "12+34" }] }),
        });
        expect(answer.status).toBe(409);
        const body = (await answer.json()) as { error: { message: string; code: string } };
        expect(body.error.code).toBe("model_not_converted");
        expect(body.error.message).toContain("is in GPTQ format and has not been converted to GGUF yet");
        expect(body.error.message).toContain("slm serve acme/tiny-arith-GPTQ");
      } finally {
        proc.kill("SIGINT");
        await proc;
      }

      const r = await slm(["run", "acme/tiny-arith-GPTQ", "12+34", "-t", "0"], box);
      expect(r.exitCode, r.all).toBe(0);
      expect(r.stdout.trim()).toBe("46");
      expect(conversionsFrom(box, "acme/tiny-arith-GPTQ").map((m) => m.name)).toEqual(["tiny-arith-GPTQ-F16"]);
    }, SLOW);

    it("`slm quantize <GPTQ folder> --type Q8_0` takes the same way to F16; an older folder without g_idx (which llama.cpp's converter cannot read) through the recipe", async (ctx) => {
      needRecipe(ctx);
      const tools = await llamaCppToolsForTests();
      if (tools.skip) ctx.skip(tools.skip);
      const old = path.join(work, "tiny-arith-GPTQ-nogidx");
      const strip = "import sys\nfrom safetensors.torch import load_file, save_file\nsd = load_file(sys.argv[1])\nsave_file({k: v for k, v in sd.items() if not k.endswith('.g_idx')}, sys.argv[2], metadata={'format': 'pt'})";
      mkdirSync(old);
      for (const f of readdirSync(gptq)) if (f !== "model.safetensors") cpSync(path.join(gptq, f), path.join(old, f));
      await execa(python!, ["-c", strip, path.join(gptq, "model.safetensors"), path.join(old, "model.safetensors")]);
      const box = { ...sb, env: { ...sb.env, SLM_LLAMA_CPP_DIR: tools.dir! } };
      const q = await slm(["quantize", old, "--type", "Q8_0", "--out", "arith-gptq-q8", "--json"], box);
      expect(q.exitCode, q.all).toBe(0);
      expect(q.stdout).toMatch(/"id":"dequantize:run"/);
      const model = (lastJson(q.stdout).data as { model: ModelEntry }).model;
      expect(model.lineage[0]).toMatchObject({ from: old, method: "quantize", parameters: { type: "Q8_0", convertedFrom: "gptq", intermediate: "F16" } });
      expect(readdirSync(path.dirname(model.path))).toEqual(["arith-gptq-q8.gguf"]);
      const r = await slm(["run", "arith-gptq-q8", "12+34", "-t", "0"], box);
      expect(r.stdout.trim()).toBe("46");
    }, SLOW);

    it("a GPTQ folder that changed since its conversion is refused, not run from the old GGUF", async (ctx) => {
      needRecipe(ctx);
      // Last of the GPTQ tests: the folder is converted (first test) and then rewritten in place, same size.
      const later = new Date(Date.now() + 120_000);
      utimesSync(path.join(gptq, "model.safetensors"), later, later);
      const r = await slm(["run", gptq, "12+34", "-t", "0"], sb);
      expect(r.exitCode, r.all).toBe(2);
      expect(r.stderr).toContain(`${gptq} changed since it was converted to tiny-arith-GPTQ-4bit-F16 (model.safetensors)`);
      expect(r.stderr).toContain("slm rm tiny-arith-GPTQ-4bit-F16");
      expect(r.stdout).toBe("");
      const info = await slm(["info", gptq, "--json"], sb);
      expect((lastJson(info.stdout).data as { converted?: unknown }).converted).toMatchObject({ name: "tiny-arith-GPTQ-4bit-F16", current: false, changed: ["model.safetensors"] });
    }, SLOW);

    it("an AWQ folder runs through the recipe's dequantize, then the converter", async (ctx) => {
      needRecipe(ctx);
      for (const module of ["awq.py", "dequantize.py"]) {
        if (!existsSync(path.join(ROOT, "recipes", "slm_recipes", "quant", module))) ctx.skip(`recipes/slm_recipes/quant/${module} is not in this checkout yet`);
      }
      const awq = path.join(work, "tiny-arith-AWQ-4bit");
      await quantizedFolder(python!, "awq", awq);
      const r = await slm(["run", awq, "12+34", "-t", "0", "--json"], sb);
      expect(r.exitCode, r.all).toBe(0);
      expect((lastJson(r.stdout).data as { text: string }).text.trim()).toBe("46");
      expect(r.stdout).toMatch(/"id":"dequantize:run"/);
      const [gguf] = conversionsFrom(sb, awq);
      expect(gguf!.lineage[0]!.parameters).toMatchObject({ outtype: "f16", dequantized: "awq", quantization: { method: "awq", bits: 4 } });
      // The float16 folder the recipe wrote was a step on the way: only the GGUF is kept.
      expect(readdirSync(path.dirname(gguf!.path))).toEqual([path.basename(gguf!.path)]);
    }, SLOW);
  });
});
