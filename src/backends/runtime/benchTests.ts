import { emit, type BackendContext } from "../../core/events.js";
import { type BenchTest, mean, stddev } from "../llama/bench.js";
import type { RuntimeBenchOptions } from "./types.js";

/** How one runtime evaluates the bench's tokens: a prompt of n tokens at once, or n tokens one at a time. */
export interface BenchWork {
  prompt(n: number): Promise<void>;
  generate(n: number): Promise<void>;
  /** Empties the context before each run, where the runtime keeps one between runs. */
  reset?(): Promise<void>;
}

/**
 * llama-bench's pp/tg tests, the same on every runtime: one warm-up run (pp at full length, tg one token),
 * then `repetitions` timed runs, each on an empty context; tokens/s per run, mean and standard deviation.
 */
export async function runBenchTests(o: Pick<RuntimeBenchOptions, "promptTokens" | "genTokens" | "repetitions">, work: BenchWork, ctx: BackendContext = {}): Promise<BenchTest[]> {
  const plan: { kind: "pp" | "tg"; tokens: number }[] = [];
  if (o.promptTokens > 0) plan.push({ kind: "pp", tokens: o.promptTokens });
  if (o.genTokens > 0) plan.push({ kind: "tg", tokens: o.genTokens });
  const tests: BenchTest[] = [];
  for (const t of plan) {
    const name = `${t.kind}${t.tokens}`;
    const id = `bench:${name}`;
    const run = t.kind === "pp" ? work.prompt : work.generate;
    emit(ctx.onEvent, { type: "step", id, status: "start", title: name });
    await work.reset?.();
    await run(t.kind === "pp" ? t.tokens : 1);
    const samplesMs: number[] = [];
    for (let r = 0; r < o.repetitions; r++) {
      await work.reset?.();
      const started = performance.now();
      await run(t.tokens);
      samplesMs.push(performance.now() - started);
      emit(ctx.onEvent, { type: "progress", id, unit: "repetitions", current: r + 1, total: o.repetitions });
    }
    await work.reset?.();
    const samples = samplesMs.map((ms) => (t.tokens * 1000) / ms);
    const test: BenchTest = { name, kind: t.kind, tokens: t.tokens, repetitions: o.repetitions, samples, samplesMs, mean: mean(samples), stddev: stddev(samples) };
    tests.push(test);
    emit(ctx.onEvent, { type: "metric", name: `${name} tokens/s`, value: Number(test.mean.toFixed(2)), unit: "tokens/s" });
    emit(ctx.onEvent, { type: "step", id, status: "done", title: name, detail: `${test.mean.toFixed(2)} ± ${test.stddev.toFixed(2)} tokens/s` });
  }
  return tests;
}
