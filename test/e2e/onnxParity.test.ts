import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, type TestContext } from "vitest";
import { loadRuntimeModel } from "../../src/backends/runtime/load.js";
import type { RuntimeModel } from "../../src/backends/runtime/types.js";
import { resolveModel } from "../../src/backends/store/resolve.js";
import { firstLines } from "../helpers/accuracy.js";
import { FIXTURE } from "../helpers/cli.js";
import { onnxFixture } from "../helpers/onnxFixture.js";

/**
 * The two runtimes behind the one interface, on the same weights: tiny-arith's F32 GGUF on llama.cpp and
 * its fp32 ONNX export on onnxruntime. Through the chat template each renders, the prompts must be the same
 * tokens, and the distribution of the first answer token the same numbers: the log-probability of every
 * one of the 320 tokens (GenerationSlot.logLikelihoods of each single-token continuation).
 *
 * How close depends on llama.cpp's settings, measured: with slm's defaults (an F16 KV cache, flash attention
 * chosen by llama.cpp, which on the CPU multiplies Q by K in F16) the log-probabilities differ by up to
 * ~5e-3, while onnxruntime's agree with PyTorch's to ~1e-6; with an F32 KV cache and flash attention off,
 * llama.cpp's agree with onnxruntime's to ~1e-5. So: within 1e-3 against llama.cpp loaded with
 * `kvCacheType: "f32", flashAttention: false`, within 1e-2 against llama.cpp as slm loads it by default. The greedy answers to 100 questions are compared
 * in onnxEval.test.ts, through `slm eval`.
 */
const SLOW = 300_000;
const F32 = path.join(FIXTURE, "gguf", "tiny-arith-f32.gguf");
/** Questions whose whole first-token distribution is compared (320 continuations each on each runtime). */
const QUESTIONS = 6;
const VOCAB = Array.from({ length: 320 }, (_, t) => [t]);

/** The largest difference between two runtimes' log-probabilities of all 320 tokens, over the questions. */
async function worstDifference(a: (prompt: number[]) => Promise<number[]>, b: (prompt: number[]) => Promise<number[]>, chatPrompt: (q: string) => Promise<number[]>): Promise<number> {
  let worst = 0;
  for (const { q } of firstLines("add-eval.jsonl", QUESTIONS)) {
    const prompt = await chatPrompt(q);
    const [x, y] = [await a(prompt), await b(prompt)];
    expect(x.every(Number.isFinite) && y.every(Number.isFinite), q).toBe(true);
    // Each a distribution: the probabilities add up to 1.
    expect(y.reduce((s, l) => s + Math.exp(l), 0)).toBeCloseTo(1, 4);
    for (let t = 0; t < 320; t++) worst = Math.max(worst, Math.abs(x[t]! - y[t]!));
    // The greedy pick is the same token.
    expect(y.indexOf(Math.max(...y)), q).toBe(x.indexOf(Math.max(...x)));
  }
  return worst;
}

describe("llama.cpp and onnxruntime on the same weights", () => {
  let skip: string | undefined;
  let gguf: RuntimeModel | undefined;
  let onnx: RuntimeModel | undefined;

  beforeAll(async () => {
    const f = await onnxFixture();
    skip = f.skip;
    if (skip) {
      process.stderr.write(`[tests] skipping the runtime parity checks: ${skip}\n`);
      return;
    }
    gguf = await loadRuntimeModel(resolveModel(F32), { threads: 1, sequences: 1, gpu: "off" });
    onnx = await loadRuntimeModel(resolveModel(f.dir!), { threads: 1, sequences: 1, dtype: "fp32" });
  }, SLOW);
  afterAll(async () => {
    await gguf?.dispose();
    await onnx?.dispose();
  });
  const need = (ctx: TestContext) => {
    if (skip) ctx.skip(skip);
  };

  it("describes what each runtime loaded", (ctx) => {
    need(ctx);
    expect(gguf!.runtime).toBe("llama.cpp");
    expect(onnx!.runtime).toBe("onnxruntime");
    expect(onnx!.dtype).toBe("fp32");
    expect(onnx!.vocabSize).toBe(320);
    expect(gguf!.vocabSize).toBe(320);
  });

  it("tokenizes text and renders the chat template to the same tokens", async (ctx) => {
    need(ctx);
    for (const text of ["12+34", "57+23 and 9-4", " leading space", "<|user|>1+1<|assistant|>"]) expect(onnx!.tokenize(text), text).toEqual(gguf!.tokenize(text));
    expect(onnx!.tokenize("<|user|>1+1", { special: true })).toEqual(gguf!.tokenize("<|user|>1+1", { special: true }));
    for (const { q } of firstLines("add-eval.jsonl", QUESTIONS)) {
      const messages = [{ role: "user" as const, content: q }];
      expect(await onnx!.chatPrompt(messages), q).toEqual(await gguf!.chatPrompt(messages));
    }
    const ids = gguf!.tokenize("12+34=46");
    expect(onnx!.detokenize(ids)).toBe(gguf!.detokenize(ids));
  });

  it(`gives the first answer token's log-probability over the whole vocabulary within 1e-3 of llama.cpp's in F32 (${QUESTIONS} questions)`, async (ctx) => {
    need(ctx);
    const exact = await loadRuntimeModel(resolveModel(F32), { threads: 1, sequences: 1, gpu: "off", kvCacheType: "f32", flashAttention: false });
    const [g, o] = [await exact.openSlot(), await onnx!.openSlot()];
    try {
      const worst = await worstDifference(
        (p) => g.logLikelihoods(p, VOCAB),
        (p) => o.logLikelihoods(p, VOCAB),
        (q) => onnx!.chatPrompt([{ role: "user", content: q }]),
      );
      process.stderr.write(`[tests] first-token log-probabilities, llama.cpp F32 (F32 KV cache, no flash attention) vs onnxruntime fp32: largest difference ${worst.toExponential(2)}\n`);
      expect(worst).toBeLessThan(1e-3);
    } finally {
      g.dispose();
      o.dispose();
      await exact.dispose();
    }
  }, SLOW);

  it("and within 1e-2 of llama.cpp's as slm loads it by default (F16 KV cache, flash attention auto)", async (ctx) => {
    need(ctx);
    const [g, o] = [await gguf!.openSlot(), await onnx!.openSlot()];
    try {
      const worst = await worstDifference(
        (p) => g.logLikelihoods(p, VOCAB),
        (p) => o.logLikelihoods(p, VOCAB),
        (q) => gguf!.chatPrompt([{ role: "user", content: q }]),
      );
      process.stderr.write(`[tests] first-token log-probabilities through both runtimes' slots: largest difference ${worst.toExponential(2)}\n`);
      expect(worst).toBeLessThan(1e-2);
    } finally {
      g.dispose();
      o.dispose();
    }
  }, SLOW);

  it("answers the same at temperature 0 through generate()", async (ctx) => {
    need(ctx);
    for (const { q, a } of firstLines("add-eval.jsonl", 10)) {
      const messages = [{ role: "user" as const, content: q }];
      const [g, o] = [await gguf!.generate({ messages, temperature: 0, maxTokens: 8 }), await onnx!.generate({ messages, temperature: 0, maxTokens: 8 })];
      expect(o.text, q).toBe(g.text);
      expect(o.stopReason).toBe("eogToken");
      if (g.text.trim() === a) expect(o.text.trim()).toBe(a);
    }
  });

  it("scores perplexity like llama-perplexity, within 0.1 % of llama.cpp's on the same text", async (ctx) => {
    need(ctx);
    const text = readFileSync(path.join(FIXTURE, "data", "eval-text.txt"), "utf8");
    const [g, o] = [await gguf!.perplexity(text, { ctxSize: 128 }), await onnx!.perplexity(text, { ctxSize: 128 })];
    expect(o.chunks).toBe(g.chunks);
    expect(o.tokens).toBe(g.tokens);
    expect(Math.abs(o.ppl - g.ppl) / g.ppl).toBeLessThan(1e-3);
  }, SLOW);
});
