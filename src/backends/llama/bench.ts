import type { ControlledEvaluateInputItem, LlamaContext, LlamaContextSequence, Token } from "node-llama-cpp";
import { emit, type BackendContext } from "../../core/events.js";
import { CancelledError, UsageError } from "../../core/errors.js";
import type { LoadOptions, LoadedModel } from "./loader.js";
import { runBenchTests } from "../runtime/benchTests.js";

/**
 * `slm bench`: prompt processing and generation throughput, measured the way llama.cpp's llama-bench
 * measures it (tools/llama-bench/llama-bench.cpp in the release node-llama-cpp ships), so the two
 * can be compared figure for figure:
 *
 * - ppN: one decode of N random tokens (the first one BOS when the model adds it), in chunks of the
 *   batch size, with logits for the last token of each chunk only (what `llama_batch_get_one` asks for);
 * - tgN: N decodes of one random token each, each with its logits, no sampling;
 * - before each test one untimed warm-up (a whole ppN, or a single tg token), then each repetition on a
 *   cleared KV cache; tokens/s = N / time per repetition; mean and sample standard deviation over them.
 *
 * Nothing is printed: progress goes out as events between repetitions (never inside a timed loop,
 * where a renderer would steal the CPU being measured), and the figures come back as a typed result.
 */

/** How tokens reach llama_decode. */
export type BenchApi = "decode" | "sequence";
export const BENCH_APIS: readonly BenchApi[] = ["decode", "sequence"];

export interface BenchOptions extends Omit<LoadOptions, "sequences"> {
  /** Prompt tokens for the pp test; 0 skips it (llama-bench's -p, default 512). */
  promptTokens: number;
  /** Generated tokens for the tg test; 0 skips it (llama-bench's -n, default 128). */
  genTokens: number;
  /** Repetitions of each test (llama-bench's -r, default 5). */
  repetitions: number;
  /**
   * "decode" (default): one native llama_decode per batch, as llama-bench does, through
   * node-llama-cpp's context binding. "sequence": node-llama-cpp's public
   * LlamaContextSequence.controlledEvaluate, with a greedy sample per output: the per-token path that
   * run/chat/serve pay, to show its overhead.
   */
  api?: BenchApi;
}

export interface BenchTest {
  /** "pp512" or "tg128", as llama-bench names them. */
  name: string;
  kind: "pp" | "tg";
  /** Tokens per repetition. */
  tokens: number;
  repetitions: number;
  /** tokens/s of each repetition. */
  samples: number[];
  /** Milliseconds of each repetition. */
  samplesMs: number[];
  mean: number;
  /** Sample standard deviation (n − 1), as llama-bench computes it; 0 for a single repetition. */
  stddev: number;
}

export interface BenchResult {
  model: {
    name: string;
    path: string;
    /** llama.cpp's own description, e.g. "llama 256M Q8_0" (llama-bench's model column). */
    description: string;
    /** Bytes of tensor data, as llama_model_size counts them. */
    sizeBytes: number;
    parameters: number;
  };
  /** "CPU", or the GPU backend (CUDA, Vulkan, Metal). */
  backend: string;
  /** What applies to every runtime, then llama.cpp's own settings, absent on another runtime. */
  settings: {
    threads: number;
    contextSize: number;
    batchSize: number;
    adapters: string[];
    gpuLayers?: number;
    flashAttention?: "auto" | boolean;
    api?: BenchApi;
    /** Threads in node's libuv pool (UV_THREADPOOL_SIZE, default 4), which runs each llama_decode. */
    libuvThreads?: number;
    /** node-llama-cpp's binary: "localBuild" after `slm setup engine`, else its generic "prebuilt" one. */
    engine?: "localBuild" | "prebuilt";
  };
  tests: BenchTest[];
  loadMs: number;
}

export function mean(xs: readonly number[]): number {
  return xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length;
}

/** Sample standard deviation, the formula llama-bench's stdev() uses. */
export function stddev(xs: readonly number[]): number {
  if (xs.length <= 1) return 0;
  const m = mean(xs);
  const sq = xs.reduce((a, b) => a + b * b, 0);
  // max(0, …): rounding can make the difference a hair negative when all samples are equal.
  return Math.sqrt(Math.max(0, sq / (xs.length - 1) - (m * m * xs.length) / (xs.length - 1)));
}

/** Validates sizes before anything loads, so a bad flag never waits for a model. */
export function checkBenchOptions(o: Pick<BenchOptions, "promptTokens" | "genTokens" | "repetitions" | "contextSize" | "batchSize">): void {
  for (const [name, v] of [["-p", o.promptTokens], ["-n", o.genTokens]] as const) {
    if (!Number.isInteger(v) || v < 0) throw new UsageError(`${name} must be a whole number ≥ 0 (got ${v}).`);
  }
  if (o.promptTokens === 0 && o.genTokens === 0) throw new UsageError("Nothing to measure: -p and -n are both 0.");
  if (!Number.isInteger(o.repetitions) || o.repetitions < 1) throw new UsageError(`-r must be a positive whole number (got ${o.repetitions}).`);
  const needed = contextNeeded(o.promptTokens, o.genTokens);
  if (o.contextSize !== undefined && o.contextSize < needed) {
    throw new UsageError(`--ctx ${o.contextSize} is too small for -p ${o.promptTokens} -n ${o.genTokens}: each test needs ${needed} tokens of context.`);
  }
}

/**
 * Each test starts on a cleared KV cache, so the context must hold the longer of the two, plus the one
 * cell node-llama-cpp's sequence API keeps free (so both APIs run with the same context).
 */
export function contextNeeded(promptTokens: number, genTokens: number): number {
  return Math.max(promptTokens, genTokens) + 1;
}

/** Feeds tokens to llama_decode and clears the sequence's KV cache. */
interface Evaluator {
  readonly api: BenchApi;
  /** Decodes `tokens` after what is already in the cache, with an output for the last token only. */
  decode(tokens: Uint32Array): Promise<void>;
  clear(): Promise<void>;
}

/**
 * The parts of node-llama-cpp's native context binding (AddonContext, `LlamaContext._ctx`) that
 * llama-bench's loop needs. They are internal, so they are checked at run time; node-llama-cpp is
 * pinned exactly (DESIGN §3), and without them the public API is used instead.
 */
interface AddonContextBinding {
  initBatch(size: number): void;
  addToBatch(sequenceId: number, firstTokenIndex: number, tokens: Uint32Array, logitIndexes: Uint32Array): Uint32Array;
  decodeBatch(): Promise<void>;
  disposeSequence(sequenceId: number): void;
}

function addonOf(context: LlamaContext, sequence: LlamaContextSequence): { addon: AddonContextBinding; sequenceId: number } | undefined {
  const addon = (context as unknown as { _ctx?: Partial<AddonContextBinding> })._ctx;
  const sequenceId = (sequence as unknown as { _sequenceId?: unknown })._sequenceId;
  if (!addon || typeof sequenceId !== "number") return undefined;
  if (typeof addon.initBatch !== "function" || typeof addon.addToBatch !== "function" || typeof addon.decodeBatch !== "function" || typeof addon.disposeSequence !== "function") return undefined;
  return { addon: addon as AddonContextBinding, sequenceId };
}

/**
 * The lowest-overhead path: one native call to fill the batch and one async llama_decode per batch.
 * node-llama-cpp's public API adds, per call, a queue dispatch, locks, token bookkeeping and (to get
 * logits at all) a sampler and an async sampling call: measured on tiny-arith, ~1 ms per token against
 * ~0.09 ms here, which is 10–15 % of a 135M model's token time (docs/benchmarks.md).
 */
function decodeEvaluator(binding: { addon: AddonContextBinding; sequenceId: number }): Evaluator {
  const { addon, sequenceId } = binding;
  let position = 0;
  const logitCache = new Map<number, Uint32Array>();
  return {
    api: "decode",
    async decode(tokens) {
      let logits = logitCache.get(tokens.length);
      if (!logits) logitCache.set(tokens.length, (logits = Uint32Array.of(tokens.length - 1)));
      addon.initBatch(tokens.length);
      addon.addToBatch(sequenceId, position, tokens, logits);
      position += tokens.length;
      await addon.decodeBatch();
    },
    async clear() {
      addon.disposeSequence(sequenceId);
      position = 0;
    },
  };
}

/** node-llama-cpp's public per-token path: the last token of each call is sampled greedily. */
function sequenceEvaluator(sequence: LlamaContextSequence): Evaluator {
  return {
    api: "sequence",
    async decode(tokens) {
      const input: ControlledEvaluateInputItem[] = Array.from(tokens, (t) => t as Token);
      input[input.length - 1] = [tokens[tokens.length - 1]! as Token, { generateNext: { token: true, options: { temperature: 0 } } }];
      await sequence.controlledEvaluate(input);
    },
    clear: () => sequence.clearHistory(),
  };
}

/** Random token ids like llama-bench's `std::rand() % n_vocab`, the first one BOS when the model adds it. */
function randomTokens(count: number, vocab: number, bos: number | undefined): Uint32Array {
  const t = new Uint32Array(count);
  for (let i = 0; i < count; i++) t[i] = Math.floor(Math.random() * vocab);
  if (count > 0 && bos !== undefined) t[0] = bos;
  return t;
}

export function backendName(gpu: string | false): string {
  if (!gpu) return "CPU";
  return gpu === "cuda" ? "CUDA" : gpu === "vulkan" ? "Vulkan" : gpu === "metal" ? "Metal" : gpu;
}

/** The pp/tg tests on a model loaded with one sequence whose context holds contextNeeded() tokens. */
export async function benchLoaded(loaded: LoadedModel, o: Pick<BenchOptions, "promptTokens" | "genTokens" | "repetitions" | "api">, ctx: BackendContext = {}): Promise<BenchResult> {
  checkBenchOptions(o);
  return runTests(loaded, o, ctx);
}

async function runTests(loaded: LoadedModel, o: Pick<BenchOptions, "promptTokens" | "genTokens" | "repetitions" | "api">, ctx: BackendContext): Promise<BenchResult> {
  const { model, context } = loaded;
  const sequence = context.getSequence();
  try {
    let evaluator: Evaluator;
    const binding = o.api === "sequence" ? undefined : addonOf(context, sequence);
    if (binding) evaluator = decodeEvaluator(binding);
    else {
      if (o.api !== "sequence") emit(ctx.onEvent, { type: "log", level: "warn", message: "node-llama-cpp's context binding has changed: measuring through its public sequence API instead (slower per token)." });
      evaluator = sequenceEvaluator(sequence);
    }
    const bos = model.tokens.shouldPrependBosToken && model.tokens.bos !== null ? (model.tokens.bos as number) : undefined;
    // Any id below the vocabulary size will do; the header always has the token list in practice.
    const libuvThreads = Number(process.env.UV_THREADPOOL_SIZE) || 4;
    if (context.currentThreads > 1 && libuvThreads !== 1) {
      // Measured in docs/benchmarks.md: node's libuv pool hands successive decodes to different worker
      // threads, and each decode starts its llama.cpp threads afresh from whichever one runs it; with 2
      // threads here tg128 then ran at 0.55× llama-bench, and at 0.97× with UV_THREADPOOL_SIZE=1. The
      // pool size is read once, before slm's code runs, so only the environment can set it.
      emit(ctx.onEvent, {
        type: "log",
        level: "warn",
        message: `generation with ${context.currentThreads} threads can run up to 2× slower than llama-bench while node's libuv pool has ${libuvThreads} threads; run with UV_THREADPOOL_SIZE=1 in the environment to measure what llama.cpp can do (docs/bench.md).`,
      });
    }
    if (loaded.llama.buildType === "prebuilt" && loaded.llama.gpu === false) {
      emit(ctx.onEvent, {
        type: "log",
        level: "warn",
        message: "node-llama-cpp's prebuilt CPU engine is compiled for generic CPUs (F16 prompt processing measured 2× slower than llama-bench here); `slm setup engine` builds one for this machine.",
      });
    }
    const vocab = loaded.summary.vocabSize ?? 1 + Math.max(bos ?? 0, (model.tokens.eos as number | null) ?? 0);
    const batch = context.batchSize;
    const check = () => {
      if (ctx.signal?.aborted) throw new CancelledError();
    };
    // llama-bench's test_prompt: chunks of n_batch, each one llama_decode with the last token's logits.
    const prompt = async (n: number) => {
      const tokens = randomTokens(n, vocab, bos);
      for (let done = 0; done < n; done += batch) {
        await evaluator.decode(tokens.subarray(done, Math.min(n, done + batch)));
        check();
      }
    };
    // llama-bench's test_gen: BOS (or a random token) first, then a new random token per decode.
    const generate = async (n: number) => {
      let token = bos ?? Math.floor(Math.random() * vocab);
      const one = new Uint32Array(1);
      for (let i = 0; i < n; i++) {
        one[0] = token;
        await evaluator.decode(one);
        token = Math.floor(Math.random() * vocab);
        check();
      }
    };

    const tests = await runBenchTests(o, { prompt, generate, reset: () => evaluator.clear() }, ctx);
    return {
      model: { name: loaded.entry.name, path: loaded.entry.path, description: model.typeDescription, sizeBytes: model.size, parameters: loaded.summary.parameters },
      backend: backendName(loaded.llama.gpu),
      settings: {
        threads: context.currentThreads,
        contextSize: context.contextSize,
        batchSize: batch,
        gpuLayers: model.gpuLayers,
        flashAttention: context.flashAttention,
        api: evaluator.api,
        adapters: loaded.adapters.map((a) => (a.scale === 1 ? a.path : `${a.path}:${a.scale}`)),
        libuvThreads,
        engine: loaded.llama.buildType,
      },
      tests,
      loadMs: loaded.loadMs,
    };
  } finally {
    sequence.dispose();
  }
}

/** llama-bench's markdown table: model, size, params, backend, threads, test, t/s. */
export function benchTable(r: BenchResult): string {
  const size = r.model.sizeBytes < 2 ** 30 ? `${(r.model.sizeBytes / 2 ** 20).toFixed(2)} MiB` : `${(r.model.sizeBytes / 2 ** 30).toFixed(2)} GiB`;
  const params = r.model.parameters < 1e9 ? `${(r.model.parameters / 1e6).toFixed(2)} M` : `${(r.model.parameters / 1e9).toFixed(2)} B`;
  // Field widths from llama-bench's markdown printer (negative = left-aligned).
  const cols: [string, number][] = [["model", -30], ["size", 10], ["params", 10], ["backend", -10], ["threads", 7], ["test", 15], ["t/s", 20]];
  const gpuLayers = r.settings.gpuLayers ?? 0;
  if (gpuLayers > 0) cols.splice(5, 0, ["ngl", 3]);
  const rows = r.tests.map((t) => {
    const vals = [r.model.description, size, params, r.backend, String(r.settings.threads), t.name, `${t.mean.toFixed(2)} ± ${t.stddev.toFixed(2)}`];
    if (gpuLayers > 0) vals.splice(5, 0, String(gpuLayers));
    return vals;
  });
  // A value wider than its column (a long model description) widens the whole column, header and rule
  // included, so the table stays aligned.
  const widths = cols.map(([h, w], i) => Math.max(Math.abs(w), h.length, ...rows.map((v) => v[i]!.length)) * Math.sign(w));
  const cell = (v: string, w: number) => (w < 0 ? v.padEnd(-w) : v.padStart(w));
  const row = (vals: string[]) => `| ${vals.map((v, i) => cell(v, widths[i]!)).join(" | ")} |`;
  const rule = `| ${widths.map((w) => (w < 0 ? `${"-".repeat(-w - 1)}-` : `${"-".repeat(w - 1)}:`)).join(" | ")} |`;
  return [row(cols.map(([h]) => h)), rule, ...rows.map(row)].join("\n");
}
