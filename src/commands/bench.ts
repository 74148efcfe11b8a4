import { type Command, InvalidArgumentError, Option } from "commander";
import type { BenchApi, BenchResult } from "../backends/llama/bench.js";
import { action, positiveInt } from "./action.js";
import { type BatchFlags, type RuntimeFlags, addBatchOption, addRuntimeOptions } from "./flags.js";

interface BenchFlags extends RuntimeFlags, BatchFlags {
  prompt: number;
  gen: number;
  repetitions: number;
  api: BenchApi;
}

/** 0 is allowed: -p 0 or -n 0 skips that test, as in llama-bench. */
function tokenCount(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a whole number ≥ 0.`);
    return n;
  };
}

export function register(program: Command): void {
  const cmd = program
    .command("bench")
    .description("Measure prompt processing and generation speed (tokens/s) the way llama-bench does")
    .argument("<model>", "registered name, catalog name, a .gguf file, an ONNX folder, or a Hugging Face/GPTQ/AWQ folder (converted to GGUF once)")
    .option("-p, --prompt <n>", "prompt tokens processed in one batch; 0 skips the test", tokenCount("--prompt"), 512)
    .option("-n, --gen <n>", "tokens generated one at a time; 0 skips the test", tokenCount("--gen"), 128)
    .option("-r, --repetitions <n>", "repetitions of each test", positiveInt("--repetitions"), 5);
  addRuntimeOptions(cmd);
  // The shared --ctx text describes run's default; bench sizes the context to its tests instead.
  const ctxOption = cmd.options.find((o) => o.long === "--ctx");
  if (ctxOption) ctxOption.description = "context size in tokens (default: the longer test + 1, as llama-bench sizes it)";
  addBatchOption(cmd);
  cmd.addOption(new Option("--api <api>", "decode: llama_decode per batch, like llama-bench; sequence: node-llama-cpp's public per-token API (what run and chat use)").choices(["decode", "sequence"]).default("decode"));
  cmd.addHelpText(
    "after",
    `
Each test gets one untimed warm-up, then each repetition runs on a cleared KV cache with random
tokens: ppN decodes N prompt tokens (in batches of --batch), tgN decodes N tokens one by one. The
result is the mean ± standard deviation of tokens/s over the repetitions, with the threads, context,
batch and GPU layers used. Threads, context and batch default to what slm run would choose.

Examples:
  slm bench qwen2.5-0.5b
  slm bench ./model-Q8_0.gguf -p 512 -n 128 -r 5 --threads 2
  slm bench tiny-arith -p 64 -n 16 -r 2 --json`,
  );
  cmd.action(
    action(async (ctx, modelRef: string, flags: BenchFlags) => {
      const [{ resolveRunnable }, { benchModel }, { checkBenchOptions, benchTable }, { resolveRuntimeLora }, { parseGpu }] = await Promise.all([
        import("../backends/convert/runnable.js"),
        import("../backends/runtime/bench.js"),
        import("../backends/llama/bench.js"),
        import("../backends/runtime/load.js"),
        import("../backends/llama/runtime.js"),
      ]);
      const sizes = { promptTokens: flags.prompt, genTokens: flags.gen, repetitions: flags.repetitions, contextSize: flags.ctx, batchSize: flags.batch };
      // Flags first: a usage error must not wait for a model to load.
      checkBenchOptions(sizes);
      // No live view: a spinner redrawing on the main thread would take CPU from the measurement.
      const render = await ctx.renderer(false);
      const backend = { signal: ctx.signal, onEvent: render.onEvent };
      const entry = await resolveRunnable(modelRef, backend, { dtype: flags.dtype });
      const lora = await resolveRuntimeLora(entry, flags.lora, backend);
      const r = await benchModel(entry, { ...sizes, gpu: parseGpu(flags.gpu ?? "auto"), threads: flags.threads, lora, api: flags.api, dtype: flags.dtype, verbose: ctx.globals.verbose }, backend);
      render.result(r, `${benchTable(r)}\n\n${settingsLine(r)}`);
    }),
  );
}

/** The settings used, those of the model's runtime only (an ONNX model has no GPU layers, flash attention, --api or libuv pool). */
function settingsLine(r: BenchResult): string {
  const s = r.settings;
  const parts = [`threads ${s.threads}`, `context ${s.contextSize}`, `batch ${s.batchSize}`];
  if (s.gpuLayers !== undefined) parts.push(`GPU layers ${s.gpuLayers}`);
  if (s.flashAttention !== undefined) parts.push(`flash attention ${s.flashAttention}`);
  if (s.api !== undefined) parts.push(`api ${s.api}`);
  if (s.libuvThreads !== undefined) parts.push(`libuv pool ${s.libuvThreads}`);
  if (s.adapters.length > 0) parts.push(`LoRA ${s.adapters.join(", ")}`);
  return `${r.model.path}\n${parts.join(", ")}; load ${r.loadMs} ms`;
}
