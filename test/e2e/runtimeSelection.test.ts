import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { missingPythonModules } from "../../src/backends/python/env.js";
import { findExecutable, pathDirs } from "../../src/core/exec.js";
import { BIN, FIXTURE, ROOT, lastJson, sandbox, slm } from "../helpers/cli.js";
import { listening } from "../helpers/serveProcess.js";

/**
 * The runtime is picked by the model's format in one place (runtime/load.ts): commands take what it loads
 * and never ask the format themselves. Checked through the CLI: --dtype belongs to ONNX models, and a real
 * ONNX export of tiny-arith (recipes/export_onnx.py, fp32) goes through run, chat, bench and eval like a
 * GGUF does, while what its runtime cannot do (LoRA at run time, KL divergence, embeddings) is refused
 * up front.
 */
const ADD_EVAL = path.join(FIXTURE, "data", "add-eval.jsonl");
const LORA = path.join(FIXTURE, "gguf", "lora-sub-f32.gguf");
// The fp32 export only: onnx_ir is for the 4-bit variant.
const EXPORT_MODULES = ["torch", "transformers", "sentencepiece", "onnx", "onnxruntime"];

async function exportPython(): Promise<{ python?: string; skip?: string }> {
  const reasons: string[] = [];
  for (const candidate of [process.env.SLM_TEST_PYTHON, process.env.SLM_PYTHON, "python3"]) {
    const python = candidate ? await findExecutable(candidate, pathDirs()) : undefined;
    if (!python) continue;
    const missing = Object.keys(await missingPythonModules({ python, source: "SLM_PYTHON" }, EXPORT_MODULES).catch(() => ({ [python]: "" })));
    if (missing.length === 0) return { python };
    reasons.push(`${python} lacks ${missing.join(", ")}`);
  }
  return { skip: `no Python with ${EXPORT_MODULES.join(", ")} (set SLM_TEST_PYTHON): ${reasons.join("; ") || "none found"}` };
}

describe("--dtype is an ONNX model's option", () => {
  const sb = sandbox();
  const cases: [string, string[]][] = [
    ["run", ["run", "tiny-arith", "12+34", "--dtype", "q4"]],
    ["chat", ["chat", "tiny-arith", "--dtype", "q4"]],
    ["bench", ["bench", "tiny-arith", "-p", "8", "-n", "4", "-r", "1", "--dtype", "q4"]],
    ["eval", ["eval", "tiny-arith", "--task", ADD_EVAL, "--limit", "2", "--dtype", "q4", "--no-store"]],
    ["serve", ["serve", "tiny-arith", "--port", "0", "--dtype", "q4"]],
  ];
  for (const [verb, args] of cases) {
    it(`${verb}: refused for a GGUF model with a usage error that says what to do, before anything loads`, async () => {
      const r = await slm(args, sb, { input: "" , timeout: 60_000 });
      expect(r.exitCode).toBe(2);
      // Said by reference resolution (store/resolve.ts) or, for a model resolved without it, by the runtime's
      // loader; eval says its own (it can name the variant per model instead).
      if (verb === "eval") expect(r.stderr).toMatch(/--dtype q4 applies to every model, and tiny-arith is a GGUF model/);
      else expect(r.stderr).toMatch(/tiny-arith is a GGUF model; (a dtype \(q4\)|--dtype) picks (a|the) variant of an ONNX model/);
      expect(r.stderr).not.toMatch(/Loading|Loaded/);
    });
  }
  it("eval: --dtype over a GGUF and an ONNX model points at NAME:dtype per model, in the error and in --help", async () => {
    const folder = path.join(mkdtempSync(path.join(tmpdir(), "slm-dtype-hint-")), "ta-onnx");
    mkdirSync(path.join(folder, "onnx"), { recursive: true });
    try {
      // A folder that scans as ONNX (config.json + onnx/model.onnx) is enough: nothing loads before the refusal.
      writeFileSync(path.join(folder, "config.json"), "{}");
      writeFileSync(path.join(folder, "onnx", "model.onnx"), "");
      const r = await slm(["eval", "tiny-arith", folder, "--dtype", "fp32", "--task", ADD_EVAL, "--limit", "2", "--no-store"], sb);
      expect(r.exitCode, r.all).toBe(2);
      expect(r.stderr).toMatch(/--dtype fp32 applies to every model, and tiny-arith is a GGUF model/);
      expect(r.stderr).toContain(`hint: Pick the variant per model with NAME:dtype instead: slm eval tiny-arith ${folder}:fp32`);
    } finally {
      rmSync(path.dirname(folder), { recursive: true, force: true });
    }
    const help = await slm(["eval", "--help"], sb);
    expect(help.stdout).toMatch(/--dtype picks the variant of every model[\s\S]*NAME:dtype/);
  });

  it("takes only the dtype vocabulary", async () => {
    const r = await slm(["run", "tiny-arith", "12+34", "--dtype", "q3"], sb);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/Allowed choices are fp32, fp16, q8, int8, uint8, q4, q4f16, bnb4/);
  });
});

const py = await exportPython();

describe.skipIf(py.skip !== undefined)(`an ONNX model through the same commands${py.skip ? ` (skipped: ${py.skip})` : ""}`, () => {
  let work: string;
  const sb = sandbox();

  beforeAll(async () => {
    work = mkdtempSync(path.join(tmpdir(), "slm-runtime-"));
    const dir = path.join(work, "tiny-arith-onnx");
    writeFileSync(path.join(work, "export.json"), JSON.stringify({ model: path.join(FIXTURE, "hf"), output_dir: dir, dtypes: ["fp32"], threads: 1 }));
    await execa(py.python!, [path.join(ROOT, "recipes/export_onnx.py"), "--config", path.join(work, "export.json")], { env: { ...process.env, OMP_NUM_THREADS: "1" } });
    // Registered as `slm export` registers its output: a named model of format onnx.
    mkdirSync(sb.home, { recursive: true });
    const entry = { name: "ta-onnx", format: "onnx", path: dir, files: [], source: { type: "derived" }, size: 0, lineage: [], createdAt: new Date().toISOString(), onnx: { dtypes: ["fp32"], base: "model" } };
    writeFileSync(path.join(sb.home, "registry.json"), JSON.stringify({ version: 1, models: { "ta-onnx": entry } }));
  }, 300_000);
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it("run answers on onnxruntime, and says so in --json", async () => {
    const r = await slm(["run", "ta-onnx", "12+34", "-t", "0", "--json"], sb);
    expect(r.exitCode, r.all).toBe(0);
    const data = lastJson(r.stdout).data as { text: string; settings: { runtime: string; dtype: string } };
    expect(data.text).toBe("46");
    expect(data.settings).toMatchObject({ runtime: "onnxruntime", dtype: "fp32" });
  });

  it("chat answers line by line", async () => {
    const r = await slm(["chat", "ta-onnx", "-t", "0"], sb, { input: "12+34\n" });
    expect(r.exitCode, r.all).toBe(0);
    expect(r.stdout.trim()).toBe("46");
  });

  it("run and chat load as quietly as a GGUF does: the same stderr on both runtimes", async () => {
    for (const args of [["run", "MODEL", "12+34", "-t", "0"], ["chat", "MODEL", "-t", "0"]]) {
      const [gguf, onnx] = await Promise.all(["tiny-arith", "ta-onnx"].map((m) => slm(args.map((a) => (a === "MODEL" ? m : a)), sb, { input: "12+34\n" })));
      expect(onnx!.exitCode, onnx!.all).toBe(0);
      expect(onnx!.stdout.trim()).toBe("46");
      expect(onnx!.stderr).toBe(gguf!.stderr);
      expect(onnx!.stderr).not.toMatch(/Load/);
    }
  });

  it("bench measures it in llama-bench's table", async () => {
    const r = await slm(["bench", "ta-onnx", "-p", "16", "-n", "8", "-r", "1", "--json"], sb);
    expect(r.exitCode, r.all).toBe(0);
    const data = lastJson(r.stdout).data as { model: { description: string }; tests: { name: string; mean: number }[] };
    expect(data.model.description).toMatch(/^onnx fp32/);
    expect(data.tests.map((t) => t.name)).toEqual(["pp16", "tg8"]);
    expect(data.tests.every((t) => t.mean > 0)).toBe(true);
  });

  it("bench's footer shows only the settings that apply on onnxruntime, and --api sequence is refused", async () => {
    const r = await slm(["bench", "ta-onnx", "-p", "16", "-n", "8", "-r", "1"], sb);
    expect(r.exitCode, r.all).toBe(0);
    expect(r.stdout).toMatch(/^threads \d+, context 17, batch \d+; load \d+ ms$/m);
    expect(r.stdout).not.toMatch(/GPU layers|flash attention|api |libuv/);
    const sequence = await slm(["bench", "ta-onnx", "-p", "16", "-n", "8", "-r", "1", "--api", "sequence"], sb);
    expect(sequence.exitCode, sequence.all).toBe(2);
    expect(sequence.stderr).toMatch(/--api sequence is node-llama-cpp's per-token API, and ta-onnx is an ONNX model/);
  });

  it("eval puts it in one table with the GGUF, with the same answers", async () => {
    const r = await slm(["eval", "tiny-arith", "ta-onnx", "--task", ADD_EVAL, "--limit", "20", "--no-store", "--json"], sb);
    expect(r.exitCode, r.all).toBe(0);
    const models = (lastJson(r.stdout).data as { models: { model: string; tasks: { score: { accuracy: { value: number }; samples: { output: string }[] } }[] }[] }).models;
    expect(models.map((m) => m.model)).toEqual(["tiny-arith", "ta-onnx"]);
    const [gguf, onnx] = models.map((m) => m.tasks[0]!.score);
    expect(onnx!.accuracy.value).toBeGreaterThanOrEqual(0.95);
    expect(onnx!.samples.map((s) => s.output)).toEqual(gguf!.samples.map((s) => s.output));
  });

  it("serve answers chat and raw completions, counting a raw prompt's tokens as run --raw does", async () => {
    const raw = "<|user|>12+34<|assistant|>";
    const run = await slm(["run", "ta-onnx", raw, "--raw", "-t", "0", "--json"], sb);
    expect(run.exitCode, run.all).toBe(0);
    const runData = lastJson(run.stdout).data as { text: string; promptTokens: number };
    const proc = execa("node", [BIN, "serve", "ta-onnx", "--port", "0"], { env: { ...sb.env }, extendEnv: true, reject: false });
    try {
      const { url } = await listening(proc, 60_000);
      const post = (route: string, body: object) => fetch(`${url}${route}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      const chat = (await (await post("/v1/chat/completions", { model: "ta-onnx", messages: [{ role: "user", content: "12+34" }], temperature: 0 })).json()) as { choices: { message: { content: string } }[] };
      expect(chat.choices[0]!.message.content).toBe("46");
      const completion = (await (await post("/v1/completions", { model: "ta-onnx", prompt: raw, temperature: 0 })).json()) as { choices: { text: string }[]; usage: { prompt_tokens: number } };
      expect(completion.choices[0]!.text).toBe(runData.text);
      expect(completion.usage.prompt_tokens).toBe(runData.promptTokens);
      const embeddings = await post("/v1/embeddings", { model: "ta-onnx", input: "12+34" });
      expect(embeddings.status).toBe(400);
      expect(((await embeddings.json()) as { error: { code: string } }).error.code).toBe("model_not_embedding");
    } finally {
      proc.kill("SIGINT");
      await proc;
    }
  });

  it("--lora is refused before any adapter is converted, pointing at the merged export", async () => {
    for (const args of [["run", "ta-onnx", "12+34", "--lora", LORA], ["eval", `ta-onnx+${LORA}`, "--task", ADD_EVAL, "--limit", "2", "--no-store"]]) {
      const r = await slm(args, sb);
      expect(r.exitCode, r.all).toBe(2);
      expect(r.stderr).toMatch(/is an ONNX model: it takes no LoRA adapters/);
      expect(r.stderr).toMatch(/slm export <base>\+<adapter> --format onnx/);
    }
  });

  it("--kld-base is refused for an ONNX model, on either side, before anything loads", async () => {
    for (const pair of [["ta-onnx", "tiny-arith"], ["tiny-arith", "ta-onnx"]]) {
      const r = await slm(["eval", pair[0]!, "--perplexity", path.join(FIXTURE, "README.md"), "--kld-base", pair[1]!, "--no-store"], sb);
      expect(r.exitCode, r.all).toBe(2);
      expect(r.stderr).toMatch(/--kld-base runs on llama\.cpp \(GGUF\) models only, and ta-onnx is an ONNX model/);
      expect(r.stderr).not.toMatch(/Loading/);
    }
  });
});

describe.skipIf(py.skip !== undefined)(`eval records of an ONNX model's variants${py.skip ? ` (skipped: ${py.skip})` : ""}`, () => {
  let work: string;
  const sb = sandbox();

  beforeAll(async () => {
    work = mkdtempSync(path.join(tmpdir(), "slm-variants-"));
    const dir = path.join(work, "tiny-arith-onnx");
    // Two dtypes in one folder, as `slm export --dtype fp32,q8` leaves them (q8 needs no onnx_ir).
    writeFileSync(path.join(work, "export.json"), JSON.stringify({ model: path.join(FIXTURE, "hf"), output_dir: dir, dtypes: ["fp32", "q8"], threads: 1 }));
    await execa(py.python!, [path.join(ROOT, "recipes/export_onnx.py"), "--config", path.join(work, "export.json")], { env: { ...process.env, OMP_NUM_THREADS: "1" } });
    mkdirSync(sb.home, { recursive: true });
    const entry = { name: "ta-onnx", format: "onnx", path: dir, files: [], source: { type: "derived" }, size: 0, lineage: [], createdAt: new Date().toISOString(), onnx: { dtypes: ["fp32", "q8"], base: "model" } };
    writeFileSync(path.join(sb.home, "registry.json"), JSON.stringify({ version: 1, models: { "ta-onnx": entry } }));
  }, 300_000);
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it("keeps one record per dtype, names the variants it saved with, and info and list show each", async () => {
    const r = await slm(["eval", "ta-onnx:fp32", "ta-onnx:q8", "--task", ADD_EVAL, "--limit", "5"], sb);
    expect(r.exitCode, r.all).toBe(0);
    expect(r.stdout).toContain("Saved with ta-onnx:fp32, ta-onnx:q8");
    // The default variant (q8 by the CPU rule) is named too, and its rerun replaces q8's record, not fp32's.
    const again = await slm(["eval", "ta-onnx", "--task", ADD_EVAL, "--limit", "5"], sb);
    expect(again.stdout).toContain("Saved with ta-onnx:q8");
    const info = await slm(["info", "ta-onnx"], sb);
    expect(info.stdout).toMatch(/add-eval \(fp32\): 100\.0 %/);
    expect(info.stdout).toMatch(/add-eval \(q8\): 100\.0 %/);
    expect(info.stdout.match(/^ +add-eval/gm)).toHaveLength(2);
    const list = await slm(["list", "--metrics"], sb);
    expect(list.stdout).toMatch(/ta-onnx .*fp32 100\.0 %, q8 100\.0 %/);
  });
});
