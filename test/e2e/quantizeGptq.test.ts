import { createHash } from "node:crypto";
import { closeSync, cpSync, openSync, readdirSync, readFileSync, readSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, beforeAll, describe, expect, it, type TestContext } from "vitest";
import type { ModelEntry } from "../../src/backends/store/types.js";
import { FIXTURE, interruptWhen, lastJson, modelDirs, registry, sandbox, type Sandbox, slm } from "../helpers/cli.js";
import { type HubServer, startHubServer } from "../helpers/hubServer.js";
import { llamaCppToolsForTests } from "../helpers/llamaCppTools.js";
import { mountSkipReason, smallDisk } from "../helpers/mounts.js";
import { quantizePythonForTests } from "../helpers/python.js";

/**
 * `slm quantize --method gptq|awq` with the real recipe (recipes/quantize_hf.py) on the fixture's HF
 * weights. One GPTQ model is made once and shared; runs use 8 calibration windows to stay quick.
 */
const HF = path.join(FIXTURE, "hf");
const GGUF = path.join(FIXTURE, "gguf", "tiny-arith-f16.gguf");
const TRAIN = path.join(FIXTURE, "data", "add-train.jsonl");
const TRAIN_SHA256 = createHash("sha256").update(readFileSync(TRAIN)).digest("hex");
const SLOW = 180_000;
const BUILD_TIMEOUT = 45 * 60_000;
/** The fixture's decoder: 4 blocks of q,k,v,o,gate,up,down (its README). */
const LINEARS = [0, 1, 2, 3].flatMap((i) => ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"].map((l) => `model.layers.${i}.${l}`));

/** A safetensors file's tensor names and dtypes, from its header (8-byte length, then JSON). */
function safetensorsHeader(file: string): Record<string, { dtype: string; shape: number[] }> {
  const fd = openSync(file, "r");
  try {
    const len = Buffer.alloc(8);
    readSync(fd, len, 0, 8, 0);
    const buf = Buffer.alloc(Number(len.readBigUInt64LE(0)));
    readSync(fd, buf, 0, buf.length, 8);
    const { __metadata__: _m, ...tensors } = JSON.parse(buf.toString("utf8")) as Record<string, { dtype: string; shape: number[] }>;
    return tensors;
  } finally {
    closeSync(fd);
  }
}

type Event = { type: string; id?: string; status?: string; unit?: string; rateUnit?: string; current?: number; total?: number; rate?: number; detail?: string };
const eventsOf = (stdout: string) => stdout.trim().split("\n").map((l) => JSON.parse(l) as Event);

describe("slm quantize --method gptq|awq", () => {
  let skipReason: string | undefined;
  let sb: Sandbox;
  let gptq: { stdout: string; exitCode?: number; all?: string };

  beforeAll(async () => {
    const py = await quantizePythonForTests();
    skipReason = py.skip;
    if (skipReason) {
      process.stderr.write(`[tests] skipping GPTQ/AWQ with the real recipe: ${skipReason}\n`);
      return;
    }
    sb = sandbox(undefined, { SLM_PYTHON: py.python! });
    gptq = await slm(["quantize", HF, "--method", "gptq", "--calibration", TRAIN, "--samples", "8", "--json"], sb);
  }, SLOW);

  const need = (ctx: TestContext) => {
    if (skipReason) ctx.skip(skipReason);
  };

  it("registers <model>-GPTQ-4bit: a GPTQ folder with every quantized linear's tensors, its quantization and lineage", (ctx) => {
    need(ctx);
    expect(gptq.exitCode, gptq.all).toBe(0);
    const entry = registry(sb).models["tiny-arith-GPTQ-4bit"]!;
    expect(entry).toMatchObject({ format: "gptq", quant: "GPTQ-4bit", quantization: { method: "gptq", bits: 4, groupSize: 128, descAct: false, sym: true }, path: path.join(sb.home, "models", "tiny-arith-GPTQ-4bit") });
    const files = readdirSync(entry.path).sort();
    expect(files).toEqual(expect.arrayContaining(["config.json", "model.safetensors", "quantize_config.json", "tokenizer.model", "tokenizer_config.json"]));
    expect(entry.files.map((f) => path.basename(f.path)).sort()).toEqual(files);
    const config = JSON.parse(readFileSync(path.join(entry.path, "config.json"), "utf8")) as { quantization_config: Record<string, unknown> };
    expect(config.quantization_config).toMatchObject({ quant_method: "gptq", bits: 4, group_size: 128, desc_act: false, sym: true, checkpoint_format: "gptq" });
    const tensors = safetensorsHeader(path.join(entry.path, "model.safetensors"));
    for (const l of LINEARS) {
      expect(Object.keys(tensors).filter((t) => t.startsWith(`${l}.`)).sort(), l).toEqual([`${l}.g_idx`, `${l}.qweight`, `${l}.qzeros`, `${l}.scales`]);
    }
    expect(entry.lineage[0]).toMatchObject({
      from: HF,
      method: "gptq",
      parameters: { bits: 4, groupSize: 128, descAct: false, sym: true, damp: 0.01, samples: 8, seqLen: 256, device: "cpu", calibration: { file: TRAIN, format: "chat-jsonl", sha256: TRAIN_SHA256 } },
    });
    // Nothing but the model: no work folder, no calibration copy.
    expect(modelDirs(sb)).toEqual(["tiny-arith-GPTQ-4bit"]);
  });

  it("reports layers done at a rate of tokens/s while it works", (ctx) => {
    need(ctx);
    const layers = eventsOf(gptq.stdout).filter((e) => e.type === "progress" && e.id === "quantize:layers");
    expect(layers.map((e) => e.current)).toEqual([0, 1, 2, 3, 4]);
    for (const e of layers.slice(1)) expect(e).toMatchObject({ unit: "layers", total: 4, rateUnit: "tokens" });
    // Steps name the user's calibration file, never slm's scratch copy or work folder (gone a moment later).
    const steps = eventsOf(gptq.stdout).filter((e) => e.type === "step");
    expect(steps.find((e) => e.id === "quantize:calibration" && e.status === "start")).toMatchObject({ detail: TRAIN });
    expect(JSON.stringify(steps)).not.toContain(".tmp-");
  });

  it("slm info shows the quantization and the calibration file with its hash; --json gives path and quantization", async (ctx) => {
    need(ctx);
    const text = await slm(["info", "tiny-arith-GPTQ-4bit"], sb);
    expect(text.exitCode, text.all).toBe(0);
    expect(text.stdout).toMatch(/^format\s+gptq \(/m);
    expect(text.stdout).toMatch(/^quantization\s+GPTQ 4-bit, group size 128, no act-order, symmetric/m);
    // Long values wrap under their column to fit 80 columns: compare the words, not the line breaks.
    expect(text.stdout.replace(/\s+/g, " ")).toContain(`${TRAIN} (chat-jsonl, sha256 ${TRAIN_SHA256}`);
    expect(text.stdout).toMatch(/^parameters\s+3\.3M \(3,311,872\)$/m);
    const json = await slm(["info", "tiny-arith-GPTQ-4bit", "--json"], sb);
    const data = lastJson(json.stdout).data as { model: ModelEntry; quantization: unknown };
    expect(data.model.path).toBe(path.join(sb.home, "models", "tiny-arith-GPTQ-4bit"));
    expect(data.quantization).toEqual({ method: "gptq", bits: 4, groupSize: 128, descAct: false, sym: true, format: "gptq" });
  });

  it("refuses a GPTQ model as a source: it needs the original weights (exit 2, nothing made)", async (ctx) => {
    need(ctx);
    const r = await slm(["quantize", "tiny-arith-GPTQ-4bit", "--method", "gptq", "--calibration", TRAIN], sb);
    expect(r.exitCode, r.all).toBe(2);
    expect(r.stderr).toMatch(/already quantized \(GPTQ\)/);
    expect(modelDirs(sb)).toEqual(["tiny-arith-GPTQ-4bit"]);
  });

  it("a disk too small for the checkpoint: exit 8 before the recipe runs, nothing left", async (ctx) => {
    need(ctx);
    if (mountSkipReason) ctx.skip(mountSkipReason);
    // ~2 MB of packed weights; the disk holds 1 MB.
    const disk = smallDisk(1024 * 1024);
    try {
      const small = { ...sb, home: disk.dir, env: { ...sb.env, SLM_HOME: disk.dir } };
      const r = await slm(["quantize", HF, "--method", "gptq", "--calibration", TRAIN, "--samples", "8"], small);
      expect(r.exitCode, r.all).toBe(8);
      expect(r.stderr).toMatch(/Not enough free space for the GPTQ checkpoint of tiny-arith/);
      expect(r.stderr).not.toContain("Loading the model");
      expect(modelDirs(small)).toEqual([]);
    } finally {
      disk.unmount();
    }
  });

  it(
    "Ctrl+C while the layers are quantized: exit 130, no folder and no registry entry",
    async (ctx) => {
      need(ctx);
      const child = slm(["quantize", HF, "--method", "gptq", "--calibration", TRAIN, "--samples", "32", "--out", "stopped", "--json"], sb);
      const sent = interruptWhen(child, /"id":"quantize:layers"[^\n]*"type":"progress"|"type":"progress"[^\n]*"id":"quantize:layers"/);
      const r = await child;
      expect(sent(), r.all).toBe(true);
      expect(r.exitCode, r.all).toBe(130);
      expect(registry(sb).models.stopped).toBeUndefined();
      expect(modelDirs(sb)).toEqual(["tiny-arith-GPTQ-4bit"]);
    },
    SLOW,
  );
});

describe("slm quantize --method awq", () => {
  let skipReason: string | undefined;
  let sb: Sandbox;

  beforeAll(async () => {
    const [py, tools] = await Promise.all([quantizePythonForTests(), llamaCppToolsForTests()]);
    skipReason = py.skip ?? tools.skip;
    if (skipReason) process.stderr.write(`[tests] skipping AWQ with the real recipe: ${skipReason}\n`);
    sb = sandbox(undefined, { ...(py.python ? { SLM_PYTHON: py.python } : {}), ...(tools.dir ? { SLM_LLAMA_CPP_DIR: tools.dir } : {}) });
  }, BUILD_TIMEOUT);

  const need = (ctx: TestContext) => {
    if (skipReason) ctx.skip(skipReason);
  };

  it(
    "registers <model>-AWQ-4bit: an AWQ GEMM folder, its quantization and the calibration hash in its lineage",
    async (ctx) => {
      need(ctx);
      const r = await slm(["quantize", "tiny-arith", "--method", "awq", "--calibration", TRAIN, "--samples", "8", "--json"], sb);
      expect(r.exitCode, r.all).toBe(0);
      const entry = registry(sb).models["tiny-arith-AWQ-4bit"]!;
      expect(entry).toMatchObject({ format: "awq", quant: "AWQ-4bit", quantization: { method: "awq", bits: 4, groupSize: 128, zeroPoint: true, format: "gemm" } });
      const config = JSON.parse(readFileSync(path.join(entry.path, "config.json"), "utf8")) as { quantization_config: Record<string, unknown> };
      expect(config.quantization_config).toMatchObject({ quant_method: "awq", version: "gemm", bits: 4, group_size: 128, zero_point: true });
      const tensors = safetensorsHeader(path.join(entry.path, "model.safetensors"));
      for (const l of LINEARS) expect(Object.keys(tensors).filter((t) => t.startsWith(`${l}.`)).sort(), l).toEqual([`${l}.qweight`, `${l}.qzeros`, `${l}.scales`]);
      expect(entry.lineage[0]).toMatchObject({ from: "tiny-arith", method: "awq", parameters: { bits: 4, groupSize: 128, zeroPoint: true, samples: 8, calibration: { file: TRAIN, sha256: TRAIN_SHA256 } } });
      const info = await slm(["info", "tiny-arith-AWQ-4bit"], sb);
      expect(info.stdout).toMatch(/^quantization\s+AWQ 4-bit, group size 128, zero point, version gemm$/m);
      expect(modelDirs(sb)).toEqual(["tiny-arith-AWQ-4bit"]);
    },
    SLOW,
  );

  it(
    "--type Q4_K_M: AWQ's scales on the float weights, then llama-quantize: a GGUF <model>-AWQ-Q4_K_M with both steps in its lineage",
    async (ctx) => {
      need(ctx);
      const r = await slm(["quantize", "tiny-arith", "--method", "awq", "--type", "Q4_K_M", "--calibration", TRAIN, "--samples", "8", "--json"], sb);
      expect(r.exitCode, r.all).toBe(0);
      const entry = registry(sb).models["tiny-arith-AWQ-Q4_K_M"]!;
      expect(entry).toMatchObject({ format: "gguf", quant: "Q4_K_M" });
      expect(readdirSync(path.dirname(entry.path))).toEqual(["tiny-arith-AWQ-Q4_K_M.gguf"]);
      expect(entry.lineage.map((l) => [l.method, l.from])).toEqual([["quantize", "tiny-arith"], ["awq", "tiny-arith"]]);
      expect(entry.lineage[1]).toMatchObject({ parameters: { output: "scaled", bits: 4, groupSize: 32, calibration: { sha256: TRAIN_SHA256 } } });
      // The model answers: a K-quant of AWQ-scaled weights is still tiny-arith.
      const run = await slm(["run", "tiny-arith-AWQ-Q4_K_M", "12+34", "-t", "0"], sb);
      expect(run.exitCode, run.all).toBe(0);
      expect(run.stdout.trim()).toBe("46");
      expect(modelDirs(sb)).toEqual(["tiny-arith-AWQ-4bit", "tiny-arith-AWQ-Q4_K_M"]);
    },
    SLOW,
  );

  it(
    "an architecture AWQ has no scaling groups for: exit 2 naming the supported ones, nothing left",
    async (ctx) => {
      need(ctx);
      const dir = path.join(sb.home, "..", "mamba-ish");
      cpSync(HF, dir, { recursive: true });
      const config = JSON.parse(readFileSync(path.join(dir, "config.json"), "utf8")) as Record<string, unknown>;
      writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...config, model_type: "mamba", architectures: ["MambaForCausalLM"] }));
      const r = await slm(["quantize", dir, "--method", "awq", "--calibration", TRAIN, "--samples", "8"], sb);
      expect(r.exitCode, r.all).toBe(2);
      expect(r.stderr).toMatch(/AWQ does not know the decoder blocks of model type mamba.*supports.*llama/);
      expect(modelDirs(sb)).toEqual(["tiny-arith-AWQ-4bit", "tiny-arith-AWQ-Q4_K_M"]);
    },
    SLOW,
  );
});

describe("slm quantize --method gptq|awq: the Hugging Face weights of a catalog or Hub model", () => {
  let server: HubServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });
  // The catalog's repos on a local Hub: the GGUF one, and the HF one (the fixture's weights under its id).
  const hfFiles = () => readdirSync(HF).map((f) => ({ path: f, file: path.join(HF, f) }));
  const repos = () => [
    { id: "Qwen/Qwen3-0.6B-GGUF", files: [{ path: "Qwen3-0.6B-Q8_0.gguf", file: GGUF }] },
    { id: "Qwen/Qwen3-0.6B", files: hfFiles() },
  ];

  it("a catalog model pulled as GGUF: its HF weights are pulled (as <id>:hf) and used, not the GGUF", async () => {
    server = await startHubServer({ repos: repos() });
    const sb = sandbox(server.url);
    expect((await slm(["pull", "qwen3-0.6b"], sb)).exitCode).toBe(0);
    // --seq-len beyond the context stops it right after the source is resolved: no Python needed.
    const r = await slm(["quantize", "qwen3-0.6b", "--method", "gptq", "--calibration", TRAIN, "--seq-len", "1024"], sb);
    expect(r.stderr).toContain("--seq-len 1024 is longer than qwen3-0.6b:hf's context (256 tokens)");
    expect(r.exitCode, r.all).toBe(2);
    expect(registry(sb).models["qwen3-0.6b:hf"]).toMatchObject({ format: "hf", source: { repo: "Qwen/Qwen3-0.6B" } });
    expect(modelDirs(sb)).toEqual([]);
  });

  it("org/repo: pulled with --format hf first", async () => {
    server = await startHubServer({ repos: repos() });
    const sb = sandbox(server.url);
    const r = await slm(["quantize", "Qwen/Qwen3-0.6B", "--method", "awq", "--calibration", TRAIN, "--seq-len", "1024"], sb);
    expect(r.stderr).toContain("--seq-len 1024 is longer than Qwen/Qwen3-0.6B's context (256 tokens)");
    expect(registry(sb).models["Qwen/Qwen3-0.6B"]).toMatchObject({ format: "hf" });
  });
});

describe("slm quantize --method gptq|awq: bad inputs, refused before any work", () => {
  const sb = sandbox();
  const nothingLeft = () => expect(modelDirs(sb)).toEqual([]);

  it("a GGUF source: these need the original Hugging Face weights, and how to get them", async () => {
    const r = await slm(["quantize", GGUF, "--method", "gptq", "--calibration", TRAIN], sb);
    expect(r.exitCode, r.all).toBe(2);
    expect(r.stderr).toContain("need the original Hugging Face weights");
    expect(r.stderr).toContain("slm pull");
    expect(r.stderr).toContain("--format hf");
    nothingLeft();
  });

  it("no calibration data", async () => {
    for (const method of ["gptq", "awq"]) {
      const r = await slm(["quantize", HF, "--method", method], sb);
      expect(r.exitCode, r.all).toBe(2);
      expect(r.stderr).toContain(`--method ${method} needs calibration data: --calibration FILE`);
    }
    const missing = await slm(["quantize", HF, "--method", "gptq", "--calibration", "no-such-file.txt"], sb);
    expect(missing.exitCode, missing.all).toBe(3);
    nothingLeft();
  });

  it("a flag of another method is refused, not ignored", async () => {
    const cases: [string[], string][] = [
      [["--method", "awq", "--desc-act"], "--desc-act does not apply to --method awq"],
      [["--method", "awq", "--no-sym"], "--no-sym does not apply to --method awq"],
      [["--method", "gptq", "--type", "Q4_K_M"], "--type does not apply to --method gptq"],
      [["--method", "gptq", "--imatrix", "x.gguf"], "--imatrix does not apply to --method gptq"],
      [["--method", "awq", "--pure"], "--pure does not apply to --method awq"],
      [["--group-size", "64"], "--group-size does not apply to --method llamacpp"],
      [["--damp", "0.05"], "--damp does not apply to --method llamacpp"],
    ];
    for (const [flags, message] of cases) {
      const r = await slm(["quantize", HF, ...flags, "--calibration", TRAIN], sb);
      expect(r.exitCode, `${flags.join(" ")}\n${r.all}`).toBe(2);
      expect(r.stderr).toContain(message);
    }
    nothingLeft();
  });

  it("--help, which that refusal points to, names the method of every flag that is not common to all", async () => {
    const help = await slm(["quantize", "--help"], sb);
    expect(help.exitCode).toBe(0);
    // Commander's layout: "  -o, --out <name>   description", continued on lines indented further.
    const options = help.stdout.slice(help.stdout.indexOf("Options:"), help.stdout.indexOf("-h, --help"));
    const described = [...options.matchAll(/^ {2}(?:-\w, )?(--[\w-]+)[^\n]*? {2,}(\S[^\n]*)/gm)].map((m) => [m[1]!, m[2]!] as const);
    const common = ["--method", "--bits", "--type", "--calibration", "--threads", "--out"];
    const sweepOnly = ["--text", "--task", "--limit", "--parallel", "--max-kld", "--max-drop", "--keep", "--report"];
    const specific = described.filter(([flag]) => !common.includes(flag));
    expect(specific.length).toBeGreaterThan(15);
    for (const [flag, text] of specific) {
      expect(text, flag).toMatch(sweepOnly.includes(flag) ? /^with --sweep/ : /^(llamacpp|gptq|awq)\b/);
    }
  });

  it("bit widths the method does not write: 3-bit GPTQ, AWQ other than 4", async () => {
    const three = await slm(["quantize", HF, "--method", "gptq", "--bits", "3", "--calibration", TRAIN], sb);
    expect(three.exitCode, three.all).toBe(2);
    expect(three.stderr).toContain("--bits 3 is not available with --method gptq");
    const awq8 = await slm(["quantize", HF, "--method", "awq", "--bits", "8", "--calibration", TRAIN], sb);
    expect(awq8.exitCode, awq8.all).toBe(2);
    expect(awq8.stderr).toContain("--bits 8 is not available with --method awq");
    nothingLeft();
  });

  it("a --seq-len longer than the model's context", async () => {
    const r = await slm(["quantize", HF, "--method", "gptq", "--seq-len", "1024", "--calibration", TRAIN], sb);
    expect(r.exitCode, r.all).toBe(2);
    expect(r.stderr).toContain("--seq-len 1024 is longer than tiny-arith's context (256 tokens)");
    nothingLeft();
  });

  it("chat calibration data for a model without a chat template", async () => {
    const dir = path.join(sb.home, "..", "no-template");
    cpSync(HF, dir, { recursive: true });
    const tc = JSON.parse(readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")) as Record<string, unknown>;
    delete tc.chat_template;
    writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify(tc));
    const r = await slm(["quantize", dir, "--method", "gptq", "--calibration", TRAIN], sb);
    expect(r.exitCode, r.all).toBe(2);
    expect(r.stderr).toContain("has no chat template to render the calibration conversations");
    nothingLeft();
  });
});
