import { UsageError } from "../../core/errors.js";
import { emit, type BackendContext } from "../../core/events.js";
import { type BenchOptions, type BenchResult, checkBenchOptions, contextNeeded } from "../llama/bench.js";
import type { ModelEntry } from "../store/types.js";
import { checkLoadOptions, loadRuntimeModel, runtimeOf } from "./load.js";
import type { RuntimeLoadOptions } from "./types.js";

export interface BenchModelOptions extends Omit<BenchOptions, "sequences">, Pick<RuntimeLoadOptions, "dtype"> {}

/**
 * `slm bench` (and quantize --sweep's speed column): loads the model on its runtime with the settings
 * slm would choose (or those asked for), one slot whose context holds the longer test, and runs the
 * pp/tg tests there.
 */
export async function benchModel(entry: ModelEntry, o: BenchModelOptions, ctx: BackendContext = {}): Promise<BenchResult> {
  checkBenchOptions(o);
  checkLoadOptions(entry, o);
  // --api picks between node-llama-cpp's two ways into llama_decode; another runtime has one way only.
  if (o.api === "sequence" && runtimeOf(entry) !== "llama.cpp") {
    throw new UsageError(`--api sequence is node-llama-cpp's per-token API, and ${entry.name} is an ONNX model (it runs on ${runtimeOf(entry)}).`, { hint: "Leave --api out for ONNX models." });
  }
  const { promptTokens, genTokens, repetitions, api, ...load } = o;
  emit(ctx.onEvent, { type: "step", id: "bench:load", status: "start", title: `Loading ${entry.name}` });
  const model = await loadRuntimeModel(entry, { ...load, contextSize: o.contextSize ?? contextNeeded(promptTokens, genTokens), sequences: 1 }, ctx);
  try {
    emit(ctx.onEvent, { type: "step", id: "bench:load", status: "done", title: `Loading ${entry.name}`, detail: `${model.loadMs} ms` });
    return await model.bench({ promptTokens, genTokens, repetitions, api }, ctx);
  } finally {
    await model.dispose();
  }
}
