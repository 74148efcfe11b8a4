import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, it, type TestContext } from "vitest";
import type { ModelEntry } from "../../src/backends/store/types.js";
import { FIXTURE, interruptWhen, lastJson, modelDirs, registry, ROOT, sandbox, type Sandbox, slm } from "../helpers/cli.js";
import { mountSkipReason, smallDisk } from "../helpers/mounts.js";
import { onnxExportPythonForTests } from "../helpers/python.js";

/**
 * `slm export <model> --format onnx` with the real recipe (recipes/export_onnx.py) on the fixture: registration,
 * a second dtype added to the same folder, a fine-tune exported merged, and the refusals. What the exported files
 * answer is checked with Python onnxruntime's own InferenceSession (test/python/onnx_greedy.py), not with slm.
 */
const HF = path.join(FIXTURE, "hf");
const GGUF = path.join(FIXTURE, "gguf", "tiny-arith-f32.gguf");
const GREEDY = path.join(ROOT, "test", "python", "onnx_greedy.py");
const SLOW = 180_000;

let python: string | undefined;
let skip: string | undefined;
let sb: Sandbox;

beforeAll(async () => {
  const p = await onnxExportPythonForTests();
  python = p.python;
  skip = p.skip;
  sb = sandbox(undefined, python ? { SLM_PYTHON: python } : {});
});

function need(ctx: TestContext): void {
  if (!python) ctx.skip(skip);
}

/** onnxruntime's greedy answers on the first `n` problems of a task file. */
function greedy(folder: string, file: string, task: string, n: number): { correct: number; n: number; answers: string[] } {
  const out = execFileSync(python!, [GREEDY, folder, file, path.join(FIXTURE, "data", task), String(n)], { encoding: "utf8", env: { ...process.env, OMP_NUM_THREADS: "1" } });
  return JSON.parse(out.trim().split("\n").pop()!) as { correct: number; n: number; answers: string[] };
}

describe("slm export --format onnx", () => {
  it(
    "registers <model>-onnx with its dtypes, and a later --dtype adds its file to the same folder",
    async (ctx) => {
      need(ctx);
      const r = await slm(["export", "tiny-arith", "--format", "onnx", "--dtype", "fp32,q4", "--json"], sb);
      expect(r.exitCode, r.all).toBe(0);
      const result = lastJson(r.stdout) as { type: string; data: { model: ModelEntry; added: string[] } };
      expect(result.type).toBe("result");
      const dir = path.join(sb.home, "models", "tiny-arith-onnx");
      const entry = registry(sb).models["tiny-arith-onnx"]!;
      expect(entry).toMatchObject({ format: "onnx", path: dir, onnx: { dtypes: ["fp32", "q4"], base: "model" }, architecture: "LlamaForCausalLM", parameters: 3311872 });
      expect(entry.lineage[0]).toMatchObject({ from: "tiny-arith", method: "export-onnx", parameters: { dtypes: ["fp32", "q4"], opset: 17 } });
      expect(entry.files.map((f) => path.relative(dir, f.path)).sort()).toEqual(["chat_template.jinja", "config.json", "generation_config.json", "onnx/model.onnx", "onnx/model_q4.onnx", "tokenizer.json", "tokenizer_config.json"]);
      expect(entry.size).toBe(entry.files.reduce((a, f) => a + f.size, 0));
      expect(modelDirs(sb)).toEqual(["tiny-arith-onnx"]);
      // The first 20 of add-eval against transformers are test/python/test_onnx_export.py's; here, that what slm
      // registered is what answers.
      for (const file of ["model.onnx", "model_q4.onnx"]) {
        const g = greedy(dir, file, "add-eval.jsonl", 5);
        expect(g.correct, `${file}: ${g.answers.join(" ")}`).toBe(5);
      }

      const before = readFileSync(path.join(dir, "onnx", "model_q4.onnx"));
      const again = await slm(["export", "tiny-arith", "--format", "onnx", "--dtype", "q8"], sb);
      expect(again.exitCode, again.all).toBe(0);
      expect(again.stdout).toMatch(/added q8 [\d.]+ MB; it now has fp32, q8, q4/);
      const updated = registry(sb).models["tiny-arith-onnx"]!;
      expect(updated.onnx?.dtypes).toEqual(["fp32", "q8", "q4"]);
      // One export step, its dtypes updated (not a step per added dtype).
      expect(updated.lineage.map((l) => l.parameters.dtypes)).toEqual([["fp32", "q8", "q4"]]);
      // Step lines write sizes as the summary does (src/core/format.ts), never MiB beside MB.
      expect(again.stderr).toMatch(/Converting to q8 \([\d.]+ MB\)/);
      expect(again.stderr).not.toMatch(/MiB/);
      expect(updated.createdAt).toBe(entry.createdAt);
      expect(updated.files.map((f) => path.basename(f.path))).toContain("model_quantized.onnx");
      expect(readFileSync(path.join(dir, "onnx", "model_q4.onnx")).equals(before)).toBe(true);
      expect(modelDirs(sb)).toEqual(["tiny-arith-onnx"]);

      const twice = await slm(["export", "tiny-arith", "--format", "onnx", "--dtype", "q4"], sb);
      expect(twice.exitCode).toBe(2);
      expect(twice.stderr).toMatch(/tiny-arith-onnx already has q4 \(onnx\/model_q4\.onnx\)/);
    },
    SLOW,
  );

  it(
    "a fine-tune that kept no merged weights is merged from its run folder, then exported",
    async (ctx) => {
      need(ctx);
      // `<base>+<name>` as slm finetune registers it (base GGUF + GGUF adapter), its run folder holding the PEFT
      // adapter and run.json naming the HF base: the fixture's subtraction adapter.
      const box = sandbox(undefined, { SLM_PYTHON: python! });
      const runDir = path.join(box.home, "runs", "tiny-arith+sub");
      mkdirSync(runDir, { recursive: true });
      cpSync(path.join(FIXTURE, "lora-sub"), path.join(runDir, "adapter"), { recursive: true });
      writeFileSync(path.join(runDir, "run.json"), JSON.stringify({ version: 1, name: "tiny-arith+sub", config: { base: HF }, finishedAt: "2026-01-01T00:00:00Z" }));
      const entry: ModelEntry = {
        name: "tiny-arith+sub", format: "gguf", path: GGUF, files: [{ path: GGUF, size: 1 }], source: { type: "derived" }, size: 1,
        adapters: [{ path: path.join(FIXTURE, "gguf", "lora-sub-f32.gguf"), scale: 1 }], lineage: [{ from: "tiny-arith", method: "lora", parameters: {}, at: "2026-01-01T00:00:00Z" }], createdAt: "2026-01-01T00:00:00Z",
      };
      writeFileSync(path.join(box.home, "registry.json"), JSON.stringify({ version: 1, models: { [entry.name]: entry } }));
      const r = await slm(["export", "tiny-arith+sub", "--format", "onnx", "--dtype", "fp32"], box);
      expect(r.exitCode, r.all).toBe(0);
      const exported = registry(box).models["tiny-arith+sub-onnx"]!;
      expect(exported.lineage[0]).toMatchObject({ from: "tiny-arith+sub", method: "export-onnx", parameters: { mergedAdapter: path.join(runDir, "adapter") } });
      expect(exported.lineage[1]).toMatchObject({ method: "lora" });
      const g = greedy(exported.path, "model.onnx", "sub-eval.jsonl", 20);
      expect(g.correct, g.answers.join(" ")).toBeGreaterThanOrEqual(19);
      expect(modelDirs(box)).toEqual(["tiny-arith+sub-onnx"]);
    },
    SLOW,
  );

  it(
    "Ctrl+C while the graph is exported: exit 130, no folder and no registry entry",
    async (ctx) => {
      need(ctx);
      const box = sandbox(undefined, { SLM_PYTHON: python! });
      const child = slm(["export", HF, "--format", "onnx", "--dtype", "q4", "--json"], box);
      const sent = interruptWhen(child, /"id":"export:graph","status":"start"/);
      const r = await child;
      expect(sent()).toBe(true);
      expect(r.exitCode, r.all).toBe(130);
      expect(modelDirs(box)).toEqual([]);
      expect(registry(box).models).toEqual({});
    },
    SLOW,
  );

  it("refuses what it cannot export, before Python starts", async () => {
    const box = sandbox(undefined, { SLM_PYTHON: "/nonexistent/python" });
    const gguf = await slm(["export", GGUF, "--format", "onnx"], box);
    expect(gguf.exitCode).toBe(2);
    expect(gguf.stderr).toMatch(/is a GGUF model; ONNX export needs the original Hugging Face weights[\s\S]*slm pull <org\/repo> --format hf/);

    const noFormat = await slm(["export", HF], box);
    expect(noFormat.exitCode).toBe(2);
    expect(noFormat.stderr).toMatch(/--format <format>' not specified/);

    const dtype = await slm(["export", HF, "--format", "onnx", "--dtype", "q4f16"], box);
    expect(dtype.exitCode).toBe(2);
    expect(dtype.stderr).toMatch(/--dtype q4f16: slm exports fp32, fp16, q8, q4/);

    const t5 = path.join(box.home, "..", "t5");
    mkdirSync(t5, { recursive: true });
    cpSync(HF, t5, { recursive: true });
    writeFileSync(path.join(t5, "config.json"), JSON.stringify({ model_type: "t5", architectures: ["T5ForConditionalGeneration"], is_encoder_decoder: true }));
    const encdec = await slm(["export", t5, "--format", "onnx"], box);
    expect(encdec.exitCode).toBe(2);
    expect(encdec.stderr).toMatch(/T5ForConditionalGeneration, not a decoder-only causal language model/);

    // An ONNX model is no source: its HF weights are.
    mkdirSync(box.home, { recursive: true });
    const onnxEntry: ModelEntry = { name: "some-onnx", format: "onnx", path: HF, files: [], source: { type: "derived" }, size: 0, onnx: { dtypes: ["fp32"], base: "model" }, lineage: [], createdAt: "2026-01-01T00:00:00Z" };
    writeFileSync(path.join(box.home, "registry.json"), JSON.stringify({ version: 1, models: { [onnxEntry.name]: onnxEntry } }));
    const fromOnnx = await slm(["export", "some-onnx", "--format", "onnx"], box);
    expect(fromOnnx.exitCode).toBe(2);
    expect(fromOnnx.stderr).toMatch(/some-onnx is an ONNX model; ONNX export needs the original Hugging Face weights/);

    // --out naming another model's export: two models never share a folder.
    const mixed = await slm(["export", HF, "--format", "onnx", "--out", "some-onnx"], box);
    expect(mixed.exitCode).toBe(2);
    expect(mixed.stderr).toMatch(/some-onnx is an ONNX model slm did not export; adding .* would mix two models/);
    expect(modelDirs(box)).toEqual([]);
  });

  it("a disk too small for the export: exit 8 before the recipe runs, nothing left", async (ctx) => {
    need(ctx);
    if (mountSkipReason) ctx.skip(mountSkipReason);
    // fp32 is ~13 MB plus the traced graph in scratch; the disk holds 4 MB.
    const disk = smallDisk(4 * 1024 * 1024);
    try {
      const small = { ...sb, home: disk.dir, env: { ...sb.env, SLM_HOME: disk.dir } };
      const r = await slm(["export", HF, "--format", "onnx"], small);
      expect(r.exitCode, r.all).toBe(8);
      expect(r.stderr).toMatch(/Not enough free space for the ONNX export of tiny-arith/);
      expect(r.stderr).not.toContain("Loading the model");
      expect(modelDirs(small)).toEqual([]);
    } finally {
      disk.unmount();
    }
  });
});
