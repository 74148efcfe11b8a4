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
 * one of the 320 tokens within 1e-3 (GenerationSlot.logLikelihoods of each single-token continuation).
 * The greedy answers to the same 100 questions are compared in onnxEval.test.ts, through `slm eval`.
 */
const SLOW = 300_000;
const F32 = path.join(FIXTURE, "gguf", "tiny-arith-f32.gguf");
/** Questions whose whole first-token distribution is compared (320 continuations each on each runtime). */
const QUESTIONS = 20;
/**
 * Below this, llama.cpp's probabilities (float32 softmax, read back as probabilities) lose the digits that
 * a log-probability within 1e-3 needs, and far below it they are 0: such tokens are compared only as "very
 * unlikely on both sides".
 */
const FLOOR = -30;

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

  it(`gives the first answer token's log-probability over the whole vocabulary within 1e-3, on ${QUESTIONS} questions`, async (ctx) => {
    need(ctx);
    const every = Array.from({ length: 320 }, (_, t) => [t]);
    const gSlot = await gguf!.openSlot();
    const oSlot = await onnx!.openSlot();
    let worst = 0;
    let compared = 0;
    try {
      for (const { q } of firstLines("add-eval.jsonl", QUESTIONS)) {
        const prompt = await gguf!.chatPrompt([{ role: "user", content: q }]);
        const [g, o] = [await gSlot.logLikelihoods(prompt, every), await oSlot.logLikelihoods(prompt, every)];
        // A distribution: the probabilities add up to 1 on each side.
        expect(o.reduce((s, l) => s + Math.exp(l), 0)).toBeCloseTo(1, 4);
        for (let t = 0; t < 320; t++) {
          if (g[t]! < FLOOR || o[t]! < FLOOR) {
            expect(Math.max(g[t]!, o[t]!), `${q}: token ${t}: ${g[t]} vs ${o[t]}`).toBeLessThan(FLOOR + 1);
            continue;
          }
          worst = Math.max(worst, Math.abs(g[t]! - o[t]!));
          compared++;
        }
        // The greedy pick is the same token.
        expect(o.indexOf(Math.max(...o)), q).toBe(g.indexOf(Math.max(...g)));
      }
    } finally {
      gSlot.dispose();
      oSlot.dispose();
    }
    process.stderr.write(`[tests] first-token log-probabilities: ${compared} compared, largest difference ${worst.toExponential(2)}\n`);
    expect(compared).toBeGreaterThan(QUESTIONS * 10);
    expect(worst).toBeLessThan(1e-3);
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
