import { emit, type BackendContext } from "../../core/events.js";
import { CancelledError } from "../../core/errors.js";
import type { BenchResult } from "../llama/bench.js";
import { runBenchTests } from "../runtime/benchTests.js";
import { chunkTokens, planChunks } from "../eval/chunks.js";
import type { PerplexityResult } from "../eval/perplexity.js";
import { Moments, perplexityEstimate } from "../eval/stats.js";
import type { RuntimeBenchOptions } from "../runtime/types.js";
import { KvCache } from "./session.js";
import { type ModelParts, logProb } from "./slot.js";

/**
 * Perplexity with llama-perplexity's method (eval/chunks.ts plans the chunks): BOS in front when the model
 * adds one, special-token text read literally, chunks of ctx tokens each on an empty cache with its
 * first token replaced by BOS, the second half of each scored. Chunks go one at a time in pieces of the
 * batch size (the batch axis is 1); the figures do not depend on that.
 */
export async function onnxPerplexity(parts: ModelParts, text: string, o: { ctxSize: number; batchSize?: number; label?: string }, ctx: BackendContext = {}): Promise<PerplexityResult> {
  const { tokenizer, session } = parts;
  const bos = tokenizer.bos;
  const body = tokenizer.encode(text, false);
  const all = new Uint32Array(body.length + (bos === undefined ? 0 : 1));
  if (bos !== undefined) all[0] = bos;
  all.set(body, bos === undefined ? 0 : 1);
  const plan = planChunks(all.length, o.ctxSize, o.batchSize);
  const nll = new Moments();
  const stepId = "perplexity";
  const title = `Perplexity of ${o.label ?? parts.name}`;
  emit(ctx.onEvent, { type: "step", id: stepId, status: "start", title, detail: `${plan.chunks} chunks of ${o.ctxSize} tokens` });
  const started = performance.now();
  try {
    for (let c = 0; c < plan.chunks; c++) {
      const chunk = Array.from(chunkTokens(all, plan, c, bos));
      const cache = new KvCache();
      for (let at = 0; at < plan.ctx; at += plan.piece) {
        if (ctx.signal?.aborted) throw new CancelledError();
        // A piece wholly before the scored half needs no logits (onnxruntime-node copies each fetched output).
        const r = await session.forward(cache, chunk.slice(at, at + plan.piece), at + plan.piece <= plan.first ? "none" : "all");
        // Row j is position at + j; positions first … ctx − 2 predict the token after them.
        for (let j = 0; j < r.rows; j++) {
          const pos = at + j;
          if (pos >= plan.first && pos <= plan.ctx - 2) nll.add(-logProb(r.logits.subarray(j * r.vocab, (j + 1) * r.vocab), chunk[pos + 1]!));
        }
      }
      emit(ctx.onEvent, { type: "progress", id: stepId, unit: "chunks", current: c + 1, total: plan.chunks });
      emit(ctx.onEvent, { type: "metric", name: "ppl", value: perplexityEstimate(nll).ppl, step: c + 1 });
    }
  } catch (err) {
    emit(ctx.onEvent, { type: "step", id: stepId, status: "fail", title, detail: (err as Error).message });
    throw err;
  }
  const seconds = (performance.now() - started) / 1000;
  const { ppl, pplError } = perplexityEstimate(nll);
  emit(ctx.onEvent, { type: "step", id: stepId, status: "done", title, detail: `${ppl.toFixed(4)} ± ${pplError.toFixed(5)}` });
  return { ppl, pplError, tokens: nll.count, chunks: plan.chunks, ctxSize: o.ctxSize, textTokens: all.length, seconds, tokensPerSecond: (plan.chunks * o.ctxSize) / seconds };
}

/** What `bench` reports about the model besides the tests. */
export interface BenchModelInfo {
  path: string;
  description: string;
  sizeBytes: number;
  parameters: number;
  threads: number;
}

/**
 * llama-bench's pp/tg tests on the ONNX session (llama/bench.ts describes them): ppN = N random tokens
 * (BOS first when the model adds one) in calls of the batch size on an empty cache; tgN = N calls of one
 * random token each; one untimed warm-up per test, then each repetition on an empty cache.
 */
export async function onnxBench(parts: ModelParts, info: BenchModelInfo, o: RuntimeBenchOptions, ctx: BackendContext = {}): Promise<BenchResult> {
  const { session, vocabSize, batchSize } = parts;
  const bos = parts.tokenizer.bos;
  const random = () => Math.floor(Math.random() * vocabSize);
  const check = () => {
    if (ctx.signal?.aborted) throw new CancelledError();
  };
  const prompt = async (n: number) => {
    const tokens = Array.from({ length: n }, random);
    if (n > 0 && bos !== undefined) tokens[0] = bos;
    const cache = new KvCache();
    for (let at = 0; at < n; at += batchSize) {
      // As a prompt is processed (slot.prefill) and llama-bench counts it: the last position's logits only.
      await session.forward(cache, tokens.slice(at, at + batchSize), at + batchSize >= n ? "last" : "none");
      check();
    }
  };
  const generate = async (n: number) => {
    const cache = new KvCache();
    let token = bos ?? random();
    for (let i = 0; i < n; i++) {
      await session.forward(cache, [token]);
      token = random();
      check();
    }
  };
  const tests = await runBenchTests(o, { prompt, generate }, ctx);
  return {
    model: { name: parts.name, path: info.path, description: info.description, sizeBytes: info.sizeBytes, parameters: info.parameters },
    backend: "CPU",
    settings: {
      threads: info.threads,
      contextSize: parts.contextSize,
      batchSize,
      adapters: [],
    },
    tests,
    loadMs: parts.loadMs,
  };
}
