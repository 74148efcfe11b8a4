import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, type TestContext } from "vitest";
import { readGgufSummary } from "../../src/backends/gguf/summary.js";
import { generate } from "../../src/backends/llama/generate.js";
import { loadModel } from "../../src/backends/llama/loader.js";
import { resolveModel } from "../../src/backends/store/resolve.js";
import type { ModelEntry } from "../../src/backends/store/types.js";
import { FIXTURE, lastJson, registry, sandbox, type Sandbox, slm } from "../helpers/cli.js";
import { writeFakeQuantize } from "../helpers/fakeQuantize.js";
import { llamaCppToolsForTests } from "../helpers/llamaCppTools.js";

const F32 = path.join(FIXTURE, "gguf", "tiny-arith-f32.gguf");
const TRAIN = path.join(FIXTURE, "data", "add-train.jsonl");
// The tools are built at most once per machine; on a busy 2-core machine that can take a while.
const BUILD_TIMEOUT = 45 * 60_000;
const SLOW = 240_000;

let toolsDir: string | undefined;
let skipReason: string | undefined;
let sb: Sandbox;

beforeAll(async () => {
  const t = await llamaCppToolsForTests();
  toolsDir = t.dir;
  skipReason = t.skip;
  if (skipReason) process.stderr.write(`[tests] skipping slm quantize tests that need llama.cpp: ${skipReason}\n`);
  sb = sandbox(undefined, toolsDir ? { SLM_LLAMA_CPP_DIR: toolsDir } : {});
}, BUILD_TIMEOUT);

function needTools(ctx: TestContext): string {
  if (!toolsDir) ctx.skip(skipReason);
  return toolsDir!;
}

interface Result {
  model: ModelEntry;
  type: string;
  sizeBefore: number;
  sizeAfter: number;
  bitsPerWeight: number;
  imatrix?: { path: string; source: string; calibration?: { format: string; examples: number } };
  toolVersion: string;
}

async function quantize(args: string[], box = sb): Promise<Result> {
  const r = await slm(["quantize", ...args, "--json"], box);
  expect(r.exitCode, r.all).toBe(0);
  const last = lastJson(r.stdout);
  expect(last.type).toBe("result");
  return last.data as Result;
}

function firstEval(n: number): { q: string; a: string }[] {
  return readFileSync(path.join(FIXTURE, "data", "add-eval.jsonl"), "utf8")
    .trim()
    .split("\n")
    .slice(0, n)
    .map((l) => JSON.parse(l) as { messages: { role: string; content: string }[] })
    .map((l) => ({ q: l.messages.find((m) => m.role === "user")!.content, a: l.messages.find((m) => m.role === "assistant")!.content }));
}

/** Exact match of greedy answers, in-process through the real stack (as test/e2e/accuracy.test.ts does). */
async function accuracy(file: string): Promise<number> {
  const loaded = await loadModel(resolveModel(file));
  try {
    const items = firstEval(100);
    let ok = 0;
    for (const it of items) if ((await generate(loaded, { prompt: it.q, temperature: 0, maxTokens: 8 })).text.trim() === it.a) ok++;
    return ok / items.length;
  } finally {
    await loaded.dispose();
  }
}

describe("slm quantize (real llama.cpp tools)", () => {
  it("Q8_0: writes a Q8_0 GGUF, registers it with its lineage, and it still adds", async (ctx) => {
    needTools(ctx);
    const r = await quantize([F32, "--type", "q8_0"]);
    expect(r.type).toBe("Q8_0");
    expect(r.model.name).toBe("tiny-arith-f32-Q8_0");
    expect(r.model.path).toBe(path.join(sb.home, "models", "tiny-arith-f32-Q8_0", "tiny-arith-f32-Q8_0.gguf"));
    expect((await readGgufSummary(r.model.path)).fileType).toBe("Q8_0");
    expect(r.sizeAfter).toBeLessThan(r.sizeBefore / 3);
    expect(r.bitsPerWeight).toBeGreaterThan(8);
    expect(r.bitsPerWeight).toBeLessThan(9.5);
    const entry = registry(sb).models["tiny-arith-f32-Q8_0"]!;
    expect(entry).toMatchObject({ format: "gguf", quant: "Q8_0", source: { type: "derived" }, architecture: "llama" });
    expect(entry.lineage).toHaveLength(1);
    expect(entry.lineage[0]).toMatchObject({ from: F32, method: "quantize", parameters: { type: "Q8_0", imatrix: null, imatrixSource: null, sourceFileType: "F32" } });
    expect(String(entry.lineage[0]!.parameters.toolVersion)).toMatch(/^llama\.cpp /);
    expect(await accuracy(r.model.path)).toBeGreaterThanOrEqual(0.95);
  }, SLOW);

  it("Q4_K_M by default, with a human summary of sizes and bits per weight; run and info use it by name", async (ctx) => {
    needTools(ctx);
    const r = await slm(["quantize", F32, "--out", "tiny-q4"], sb);
    expect(r.exitCode, r.all).toBe(0);
    expect(r.stdout).toMatch(/^tiny-q4: Q4_K_M, 13\.3 MB → [\d.]+ MB \(\d+ %\), [\d.]+ bits per weight \(was 32\.00\)/);
    expect(r.stderr).toContain("✓ Quantizing tiny-arith-f32.gguf to Q4_K_M");
    const file = path.join(sb.home, "models", "tiny-q4", "tiny-q4.gguf");
    expect((await readGgufSummary(file)).fileType).toBe("Q4_K_M");
    expect(await accuracy(file)).toBeGreaterThanOrEqual(0.95);

    const run = await slm(["run", "tiny-q4", "12+34", "-t", "0"], sb);
    expect(run.exitCode, run.all).toBe(0);
    expect(run.stdout.trim()).toBe("46");
    const info = await slm(["info", "tiny-q4"], sb);
    expect(info.stdout).toMatch(/file type\s+Q4_K_M/);
    // A long lineage wraps under its column (80 columns): the path may start the next line.
    expect(info.stdout).toMatch(/lineage\s+quantize of\s+\S*tiny-arith-f32\.gguf/);
    const list = await slm(["list"], sb);
    expect(list.stdout).toContain("tiny-q4");
  }, SLOW);

  it("Q2_K with an importance matrix computed from chat JSONL rendered through the model's template", async (ctx) => {
    needTools(ctx);
    const events: string[] = [];
    const r = await slm(["quantize", F32, "--bits", "2", "--calibration", TRAIN, "--out", "tiny-q2", "--json"], sb);
    expect(r.exitCode, r.all).toBe(0);
    for (const line of r.stdout.trim().split("\n")) events.push(line);
    const data = lastJson(r.stdout).data as Result;
    expect(data.type).toBe("Q2_K");
    expect((await readGgufSummary(data.model.path)).fileType).toBe("Q2_K");
    expect(data.imatrix).toMatchObject({ path: path.join(sb.home, "models", "tiny-q2", "imatrix.gguf"), source: TRAIN, calibration: { format: "chat-jsonl", examples: 9000 } });
    expect(existsSync(data.imatrix!.path)).toBe(true);
    // The calibration text is an intermediate: only the model and its importance matrix stay.
    expect(readdirSync(path.join(sb.home, "models", "tiny-q2")).sort()).toEqual(["imatrix.gguf", "tiny-q2.gguf"]);
    const lineage = registry(sb).models["tiny-q2"]!.lineage[0]!;
    expect(lineage.parameters).toMatchObject({ type: "Q2_K", imatrix: data.imatrix!.path, imatrixSource: TRAIN, calibration: { format: "chat-jsonl", examples: 9000 } });
    // Progress came per imatrix chunk and per tensor.
    const progress = events.map((l) => JSON.parse(l) as { type: string; id?: string; current?: number; total?: number }).filter((e) => e.type === "progress");
    expect(progress.some((e) => e.id === "quantize:imatrix" && (e.current ?? 0) > 0)).toBe(true);
    const tensors = progress.filter((e) => e.id === "quantize:run");
    expect(tensors.at(-1)).toMatchObject({ current: tensors.at(-1)!.total });
    expect(await accuracy(data.model.path)).toBeGreaterThanOrEqual(0.95);
    // llama-imatrix reads all 9,000 conversations (~400 chunks): 20 s on an idle 2-core machine, and
    // several times that while other test files run beside it.
  }, 600_000);

  it("refuses an already-quantized source unless --allow-requantize, and warns when allowed", async (ctx) => {
    needTools(ctx);
    const refused = await slm(["quantize", "tiny-arith-f32-Q8_0", "--type", "Q4_K_M"], sb);
    expect(refused.exitCode, refused.all).toBe(2);
    expect(refused.stderr).toMatch(/already quantized \(Q8_0\)/);
    expect(refused.stderr).toMatch(/--allow-requantize/);
    const allowed = await slm(["quantize", "tiny-arith-f32-Q8_0", "--type", "Q4_K_M", "--allow-requantize"], sb);
    expect(allowed.exitCode, allowed.all).toBe(0);
    expect(allowed.stderr).toMatch(/warn: .*requantizing loses more quality/);
    const entry = registry(sb).models["tiny-arith-f32-Q8_0-Q4_K_M"]!;
    // The lineage chains: this model ← the Q8_0 ← the F32 file.
    expect(entry.lineage.map((l) => l.from)).toEqual(["tiny-arith-f32-Q8_0", F32]);
    expect(entry.lineage[0]!.parameters).toMatchObject({ requantized: true, sourceFileType: "Q8_0" });
  }, SLOW);

  it("rejects an unknown type with a suggestion, checked against llama-quantize's own list", async (ctx) => {
    needTools(ctx);
    const r = await slm(["quantize", F32, "--type", "Q4_K_N"], sb);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/Unknown quantization type "Q4_K_N"/);
    expect(r.stderr).toMatch(/Did you mean Q4_K_M/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it("asks for an importance matrix for IQ and ≤3-bit types, and says how to give one", async (ctx) => {
    needTools(ctx);
    for (const args of [["--type", "IQ2_XS"], ["--bits", "3"], ["--type", "iq4_xs"]]) {
      const r = await slm(["quantize", F32, ...args], sb);
      expect(r.exitCode, args.join(" ")).toBe(2);
      expect(r.stderr).toMatch(/needs an importance matrix/);
      expect(r.stderr).toMatch(/--calibration FILE/);
      expect(r.stderr).toMatch(/--imatrix FILE/);
    }
  });

  // HF-format inputs are converted first: test/e2e/quantizeHf.test.ts.
  it("gives clear errors for a missing file, a taken name and conflicting flags, registering nothing", async (ctx) => {
    needTools(ctx);
    const before = Object.keys(registry(sb).models).sort();
    const missing = await slm(["quantize", "/nonexistent/model-f16.gguf"], sb);
    expect(missing.exitCode).toBe(3);
    expect(missing.stderr).toMatch(/No such file/);
    const taken = await slm(["quantize", F32, "--type", "Q8_0"], sb);
    expect(taken.exitCode).toBe(2);
    expect(taken.stderr).toMatch(/already registered/);
    const both = await slm(["quantize", F32, "--type", "Q8_0", "--bits", "8"], sb);
    expect(both.exitCode).toBe(2);
    const badName = await slm(["quantize", F32, "--out", "a/b"], sb);
    expect(badName.exitCode).toBe(2);
    const json = await slm(["quantize", F32, "--type", "Q4_K_N", "--json"], sb);
    expect(lastJson(json.stdout)).toMatchObject({ type: "error", error: { exitCode: 2 } });
    expect(Object.keys(registry(sb).models).sort()).toEqual(before);
  });

  it("slm setup llama.cpp reports the installed tools and their version instead of rebuilding", async (ctx) => {
    needTools(ctx);
    const r = await slm(["setup", "llama.cpp"], sb);
    expect(r.exitCode, r.all).toBe(0);
    expect(r.stdout).toMatch(/llama\.cpp's tools are installed \(llama\.cpp /);
    for (const t of ["llama-quantize", "llama-imatrix", "llama-perplexity", "llama-bench", "llama-export-lora"]) expect(r.stdout).toContain(t);
  });
});

describe("slm quantize when things go wrong", () => {
  let fakeDir: string;
  let box: Sandbox;
  const pidFile = () => path.join(fakeDir, "pid");

  beforeAll(() => {
    if (!toolsDir) return;
    // A llama-quantize that answers --help (and --version) as the real one does, then writes half a model and
    // either hangs (to be interrupted) or fails the way a full disk does.
    fakeDir = writeFakeQuantize(toolsDir, { label: "q8_0" }).dir;
    box = sandbox(undefined, { SLM_LLAMA_CPP_DIR: fakeDir });
  });
  afterAll(() => {
    // Nothing to clean: the sandbox lives in the OS temp folder.
  });

  function leftovers(): string[] {
    const models = path.join(box.home, "models");
    return existsSync(models) ? readdirSync(models) : [];
  }

  it("Ctrl+C mid-way stops llama-quantize and leaves no file and no registry entry", async (ctx) => {
    needTools(ctx);
    const child = slm(["quantize", F32, "--type", "Q8_0"], box);
    let seen = "";
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`llama-quantize never started: ${seen}`)), 60_000);
      child.stderr!.on("data", (d: Buffer) => {
        seen += d.toString();
        if (seen.includes("Quantizing") && existsSync(pidFile())) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    // The fake has written part of its output by now.
    expect(leftovers().some((n) => n.startsWith(".tmp-"))).toBe(true);
    child.kill("SIGINT");
    const r = await child;
    expect(r.exitCode, r.all).toBe(130);
    expect(leftovers()).toEqual([]);
    expect(registry(box).models).toEqual({});
    const pid = Number(readFileSync(pidFile(), "utf8"));
    let alive = true;
    for (let i = 0; i < 50 && alive; i++) {
      try {
        process.kill(pid, 0);
        await new Promise((res) => setTimeout(res, 100));
      } catch {
        alive = false;
      }
    }
    expect(alive).toBe(false);
  }, 120_000);

  it("a failing llama-quantize (disk full) is an external-tool error with its stderr, and leaves nothing", async (ctx) => {
    needTools(ctx);
    const r = await slm(["quantize", F32, "--type", "Q8_0"], { ...box, env: { ...box.env, FAKE_MODE: "fail" } });
    expect(r.exitCode, r.all).toBe(6);
    expect(r.stderr).toMatch(/llama-quantize exited with code 1/);
    expect(r.stderr).toMatch(/No space left on device/);
    expect(leftovers()).toEqual([]);
    expect(registry(box).models).toEqual({});
  }, 120_000);
});

describe("slm quantize without llama.cpp's tools", () => {
  it("fails without a terminal with the missing-dependency error naming slm setup llama.cpp", async () => {
    const empty = mkdtempSync(path.join(tmpdir(), "slm-no-tools-"));
    mkdirSync(path.join(empty, "bin"));
    // An empty tools folder, a PATH with only node on it, and a fresh SLM_HOME without any build.
    const box = sandbox(undefined, { SLM_LLAMA_CPP_DIR: empty, PATH: path.dirname(process.execPath) });
    const r = await slm(["quantize", F32, "--type", "Q8_0"], box);
    expect(r.exitCode, r.all).toBe(5);
    expect(r.stderr).toMatch(/llama-quantize was not found/);
    expect(r.stderr).toContain("slm setup llama.cpp");
    const json = await slm(["quantize", F32, "--json"], box);
    expect(lastJson(json.stdout)).toMatchObject({ type: "error", error: { name: "MissingDependencyError", exitCode: 5 } });
    expect(lastJson(json.stdout).error?.hint).toContain("slm setup llama.cpp");
    // Flags are checked before the tools: a typo never waits for a build.
    const iq = await slm(["quantize", F32, "--type", "IQ2_XS"], box);
    expect(iq.exitCode).toBe(2);
    expect(existsSync(path.join(box.home, "models"))).toBe(false);
  });
});
