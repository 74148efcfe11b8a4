import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { continuationLogLikelihoods } from "../../src/backends/llama/likelihood.js";
import { type LoadedModel, loadModel } from "../../src/backends/llama/loader.js";
import { type DistributionReader, openReaders } from "../../src/backends/llama/logprobs.js";
import { measureOutputs } from "../../src/backends/llama/measure.js";
import type { NativeLogitsAddon } from "../../src/backends/llama/native/addon.js";
import { missingBuildTools } from "../../src/backends/llama/native/build.js";
import { nativeRowsFor, prepareNativeRows, probeModel } from "../../src/backends/llama/native/probe.js";
import { SamplerRows, logitRowsFor } from "../../src/backends/llama/rows.js";
import { tokenizeText } from "../../src/backends/llama/prompt.js";
import { resolveModel } from "../../src/backends/store/resolve.js";
import type { SlmEvent } from "../../src/core/events.js";
import { FIXTURE, ROOT, lastJson, sandbox, slm } from "../helpers/cli.js";
import { convertPythonForTests } from "../helpers/python.js";

/**
 * slm's log-probability addon (native/slm_logits.cc) against the exact slow path (node-llama-cpp's
 * sampler, renormalised in float64) on the same decodes, for what perplexity, KLD and multiple choice
 * read; against the fixture's Hugging Face weights in torch; and the fallback when it cannot be used.
 * The addon is built once per test run into the shared SLM_NATIVE_DIR (test/helpers/isolateEnv.ts).
 */
const F16 = path.join(FIXTURE, "gguf", "tiny-arith-f16.gguf");
const F32 = path.join(FIXTURE, "gguf", "tiny-arith-f32.gguf");
const TEXT = path.join(FIXTURE, "data", "eval-text.txt");
const TOLERANCE = 1e-5;
const CTX = 128;

// Without a compiler the addon cannot be built here: the fallback test still runs, the others skip.
const missing = await missingBuildTools();
if (missing) process.stderr.write(`[tests] skipping the native log-probability comparisons: building the addon needs ${missing}\n`);

const events: SlmEvent[] = [];
const loaded: LoadedModel[] = [];
let f16: LoadedModel;
let f32: LoadedModel;

beforeAll(async () => {
  if (missing) return;
  for (const file of [F32, F16]) loaded.push(await loadModel(await resolveModel(file), { contextSize: CTX, threads: 1, batchSize: 512 }));
  [f32, f16] = loaded as [LoadedModel, LoadedModel];
  for (const l of loaded) await prepareNativeRows(l, { onEvent: (e) => events.push(e) });
}, 120_000);

afterAll(async () => {
  for (const l of loaded) await l.dispose();
});

/** Decodes the first chunk of the text on each reader with an output at every position but the last. */
async function decodeChunk(readers: DistributionReader[], tokens: Uint32Array): Promise<Int32Array> {
  const chunk = tokens.subarray(0, CTX);
  const outputs = Uint32Array.from({ length: CTX - 1 }, (_, i) => i);
  for (const r of readers) await r.decode([{ sequence: 0, start: 0, tokens: chunk, outputs }]);
  return Int32Array.from(chunk.subarray(1));
}

/** The same measures with the addon, then through the sampler (rows stay valid: no decode in between). */
async function bothWays(readers: DistributionReader[], targets: Int32Array, kl: boolean) {
  expect(readers.every((r) => r.native)).toBe(true);
  const fast = await measureOutputs(readers, targets, kl);
  const saved = readers.map((r) => r.native);
  for (const r of readers) r.native = undefined;
  try {
    return { fast, slow: await measureOutputs(readers, targets, kl) };
  } finally {
    readers.forEach((r, i) => (r.native = saved[i]));
  }
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe.skipIf(missing !== "")("native log-probabilities", () => {
  it("were built, probed and accepted, silently", () => {
    expect(events.filter((e) => e.type === "log" && e.level === "warn")).toEqual([]);
    expect(logitRowsFor(f16).native).toBe(true);
  });

  it("equal the exact path's for perplexity and KLD: ln p(target), arg-max and KL per position", async () => {
    const base = await openReaders(f32, 1);
    const model = await openReaders(f16, 1);
    try {
      const readers = [base.readers[0]!, model.readers[0]!];
      const targets = await decodeChunk(readers, tokenizeText(f16.model, readFileSync(TEXT, "utf8")));
      const { fast, slow } = await bothWays(readers, targets, true);
      for (const m of [0, 1]) {
        expect(maxDiff(fast.logprob[m]!, slow.logprob[m]!)).toBeLessThan(TOLERANCE);
        expect([...fast.top[m]!]).toEqual([...slow.top[m]!]);
      }
      expect(maxDiff(fast.kl!, slow.kl!)).toBeLessThan(TOLERANCE);
      // Not trivially equal: F16 and F32 differ somewhere.
      expect(Math.max(...fast.kl!)).toBeGreaterThan(1e-6);
    } finally {
      await model.dispose();
      await base.dispose();
    }
  });

  it("equal the exact path's through LogitRows (serve's reader): ln p(target) and the top 5", async () => {
    const reader = (await openReaders(f16, 1)).readers[0]!;
    const fast = logitRowsFor(f16);
    const slow = new SamplerRows(f16, f16.context, f16.summary.vocabSize!);
    try {
      const targets = await decodeChunk([reader], tokenizeText(f16.model, readFileSync(TEXT, "utf8")));
      const indexes = reader.outputIndexes();
      expect(fast.native).toBe(true);
      for (let k = 0; k < indexes.length; k += 9) {
        const [a, b] = [await fast.read(indexes[k]!, targets[k]!, 5), await slow.read(indexes[k]!, targets[k]!, 5)];
        expect(Math.abs(a.logprob - b.logprob)).toBeLessThan(TOLERANCE);
        expect(a.top.map((t) => t.token)).toEqual(b.top.map((t) => t.token));
        expect(maxDiff(a.top.map((t) => t.logprob), b.top.map((t) => t.logprob))).toBeLessThan(TOLERANCE);
      }
    } finally {
      slow.dispose();
      reader.dispose();
    }
  });

  it("equal the exact path's for multiple choice, read through the sampling tap", async () => {
    const native = nativeRowsFor(f16, f16.context);
    expect(native).toBeDefined();
    const sequence = f16.context.getSequence();
    try {
      const lines = readFileSync(path.join(FIXTURE, "data", "add-choice.jsonl"), "utf8").trim().split("\n").slice(0, 12);
      for (const line of lines) {
        const q = JSON.parse(line) as { question: string; choices: string[] };
        const prompt = f16.model.tokenize(`<|user|>${q.question}<|assistant|>`, true);
        const choices = q.choices.map((c) => f16.model.tokenize(c));
        const fast = await continuationLogLikelihoods(sequence, prompt, choices, undefined, native);
        const slow = await continuationLogLikelihoods(sequence, prompt, choices);
        expect(maxDiff(fast, slow)).toBeLessThan(TOLERANCE);
      }
    } finally {
      sequence.dispose();
    }
  });

  it("equal an independent computation from the fixture's Hugging Face weights (torch)", async (t) => {
    const { python, skip } = await convertPythonForTests();
    if (!python) return t.skip(skip);
    const tokens = tokenizeText(f32.model, readFileSync(TEXT, "utf8")).subarray(0, 64);
    const r = await execa(python, [path.join(ROOT, "test", "python", "tiny_arith_logprobs.py")], {
      input: JSON.stringify({ hf: path.join(FIXTURE, "hf"), tokens: [...tokens] }),
      env: { OMP_NUM_THREADS: "1" },
    });
    const ref = JSON.parse(r.stdout) as { logprobs: number[]; tops: number[] };
    const reader = (await openReaders(f32, 1)).readers[0]!;
    try {
      const outputs = Uint32Array.from({ length: tokens.length - 1 }, (_, i) => i);
      await reader.decode([{ sequence: 0, start: 0, tokens, outputs }]);
      const fast = await measureOutputs([reader], Int32Array.from(tokens.subarray(1)), false);
      // The F32 GGUF against float32 torch: the same weights, but llama.cpp keeps its KV cache in float16,
      // so a logit is off by about float16's relative precision (~1e-3): measured up to 0.033 nats at −18.
      fast.logprob[0]!.forEach((lp, i) => expect(Math.abs(lp - ref.logprobs[i]!), `position ${i}: ${lp} vs ${ref.logprobs[i]}`).toBeLessThan(5e-3 + 2.5e-3 * Math.abs(ref.logprobs[i]!)));
      expect([...fast.top[0]!].filter((t, i) => t !== ref.tops[i]).length).toBeLessThanOrEqual(1);
    } finally {
      reader.dispose();
    }
  });

  it("are refused when the probe disagrees with the exact path", async () => {
    const real = (await prepareNativeRows(f16))!;
    const skewed: NativeLogitsAddon = {
      ...real,
      scoreRows: (h, indexes, targets, logprobs, tops) => {
        real.scoreRows(h, indexes, targets, logprobs, tops);
        for (let k = 0; k < logprobs.length; k++) logprobs[k]! -= 1e-4;
      },
    };
    expect(await probeModel(f16, real)).toBeUndefined();
    expect(await probeModel(f16, skewed)).toMatch(/differs from the exact path's by (9\.9\de-5|1\.0\de-4)/);
  });
});

describe("slm eval without the addon", () => {
  const work = mkdtempSync(path.join(tmpdir(), "slm-native-test-"));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it("falls back to the exact slow path, says so once, and gives the same values", async () => {
    const box = sandbox();
    const args = ["eval", F16, "--perplexity", TEXT, "--ctx", String(CTX), "--kld-base", F32, "--json"];
    const withAddon = await slm(args, box);
    expect(withAddon.exitCode, withAddon.all).toBe(0);
    // A cache folder that cannot exist (under a regular file): the build fails, eval goes on.
    const blocker = path.join(work, "file");
    writeFileSync(blocker, "");
    const without = await slm(args, { ...box, env: { ...box.env, SLM_NATIVE_DIR: path.join(blocker, "native") } });
    expect(without.exitCode, without.all).toBe(0);
    const told = without.stdout.split("\n").filter((l) => l.includes("slow exact path"));
    expect(told).toHaveLength(1);
    expect(told[0]).toMatch(/could not be built/);
    // The place and what to change, not a raw errno; and one full stop per sentence.
    expect(told[0]).toMatch(/is a file, not a folder.*SLM_NATIVE_DIR/);
    expect(told[0]).not.toMatch(/\.\./);
    expect(without.stderr).not.toMatch(/\n\s+at /);
    if (!missing) expect(withAddon.stdout).not.toMatch(/slow exact path/);
    const kld = (o: string) => (lastJson(o).data as { models: { kld: { mean: number; ppl: number; sameTop: number } }[] }).models[0]!.kld;
    const [a, b] = [kld(withAddon.stdout), kld(without.stdout)];
    expect(Math.abs(a.ppl / b.ppl - 1)).toBeLessThan(1e-6);
    expect(Math.abs(a.mean - b.mean)).toBeLessThan(1e-7);
    expect(a.sameTop).toBe(b.sameTop);
  }, 120_000);
});
