import { existsSync } from "node:fs";
import type { ChatWrapper, Llama, LlamaContext, LlamaModel } from "node-llama-cpp";
import { emit, type BackendContext } from "../../core/events.js";
import { NotFoundError, SlmError, UsageError } from "../../core/errors.js";
import { readGgufSummary, type GgufSummary } from "../gguf/summary.js";
import type { ModelEntry } from "../store/types.js";
import type { LoraSpec } from "./lora.js";
import { type GpuChoice, getRuntime } from "./runtime.js";
import { serializeSampling } from "./serialSampling.js";
import { type WeightsLease, acquireWeights } from "./sharedWeights.js";
import { type ChosenSettings, type RuntimeRequest, chooseSettings } from "./settings.js";
import { convertFirstHint } from "../convert/suggest.js";
import { countOf } from "../../core/format.js";

export interface LoadOptions extends RuntimeRequest {
  gpu?: GpuChoice;
  lora?: LoraSpec[];
  /** Parallel sequences in the context (serve). */
  sequences?: number;
  /** The KV cache's element type (llama.cpp's default: f16). */
  kvCacheType?: "f16" | "f32";
  flashAttention?: boolean | "auto";
  verbose?: boolean;
}

export interface LoadedModel {
  entry: ModelEntry;
  summary: GgufSummary;
  llama: Llama;
  model: LlamaModel;
  context: LlamaContext;
  settings: ChosenSettings;
  adapters: LoraSpec[];
  loadMs: number;
  /**
   * The chat template wrapper, resolved once per model: node-llama-cpp re-resolves it for every new
   * chat session otherwise, which costs hundreds of milliseconds each time (measured on tiny-arith).
   */
  chatWrapper(): Promise<ChatWrapper>;
  dispose(): Promise<void>;
}

/**
 * Loads a model and one context for it. The GGUF header is checked first (a truncated file would
 * otherwise reach native code), adapters of a registered "base + adapter" model come before --lora ones.
 */
export async function loadModel(entry: ModelEntry, o: LoadOptions = {}, ctx: BackendContext = {}): Promise<LoadedModel> {
  const started = Date.now();
  if (entry.format !== "gguf") {
    throw new UsageError(`${entry.source.type === "local" ? entry.path : entry.name} is in Hugging Face format; running it needs a GGUF file.`, { hint: convertFirstHint(entry, "run") });
  }
  if (!existsSync(entry.path)) throw new NotFoundError(`The file of ${entry.name} is missing: ${entry.path}`, { hint: `Run \`slm pull ${entry.name}\` again.` });
  const summary = await readGgufSummary(entry.path);
  if (summary.type === "adapter") throw new UsageError(`${entry.path} is a LoRA adapter, not a model.`, { hint: "Load it onto its base model: slm run <base> --lora <adapter.gguf>." });
  const adapters = [...(entry.adapters ?? []), ...(o.lora ?? [])];
  for (const a of adapters) {
    const s = await readGgufSummary(a.path);
    if (s.type !== "adapter") throw new UsageError(`${a.path} is not a LoRA adapter (its general.type is ${s.type ?? "missing"}).`);
    if (s.architecture !== summary.architecture) {
      throw new UsageError(`The LoRA adapter ${a.path} is for ${s.architecture}, but ${entry.name} is ${summary.architecture}.`);
    }
  }
  const llama = await getRuntime(o.gpu ?? "auto", o.verbose);
  const settings = chooseSettings(llama, summary.contextLength, o);
  for (const r of settings.reasons) emit(ctx.onEvent, { type: "log", level: "debug", message: r });
  for (const w of settings.warnings) emit(ctx.onEvent, { type: "log", level: "warn", message: w });
  let weights: WeightsLease;
  try {
    // Shared with any context of this process already on the same file (serve's `base` and `base+adapter`).
    weights = await acquireWeights(llama, entry.path, settings.gpuLayers, adapters.map((a) => a.path), ctx.signal);
  } catch (err) {
    throw new SlmError(`Could not load ${entry.name}: ${(err as Error).message}`, { hint: "The file may be damaged or need a newer llama.cpp; `slm info` reads its header." });
  }
  const model: LlamaModel = weights.model;
  emit(ctx.onEvent, { type: "log", level: "debug", message: weights.loaded ? `weights of ${entry.name} loaded` : `weights of ${entry.name} shared with a context already loaded` });
  let context: LlamaContext;
  try {
    context = await model.createContext({
      contextSize: settings.contextSize,
      threads: { ideal: settings.threads, min: settings.threads },
      batchSize: settings.batchSize,
      sequences: o.sequences ?? 1,
      ...(o.kvCacheType ? { experimentalKvCacheKeyType: o.kvCacheType.toUpperCase() as "F16" | "F32", experimentalKvCacheValueType: o.kvCacheType.toUpperCase() as "F16" | "F32" } : {}),
      ...(o.flashAttention !== undefined ? { flashAttention: o.flashAttention } : {}),
      lora: adapters.length > 0 ? { adapters: adapters.map((a) => ({ filePath: a.path, scale: a.scale })) } : undefined,
      createSignal: ctx.signal,
    });
  } catch (err) {
    await weights.release();
    const msg = (err as Error).message;
    throw new SlmError(`Could not create a context for ${entry.name}: ${msg}`, { hint: /memory|VRAM|RAM/i.test(msg) ? "Use a smaller --ctx." : undefined });
  }
  try {
    serializeSampling(context);
  } catch (err) {
    await context.dispose();
    await weights.release();
    throw err;
  }
  emit(ctx.onEvent, { type: "log", level: "debug", message: `context ${context.contextSize} tokens, batch ${context.batchSize}, ${countOf(settings.threads, "thread")}` });
  let wrapper: Promise<ChatWrapper> | undefined;
  return {
    entry,
    summary,
    llama,
    model,
    context,
    settings,
    adapters,
    loadMs: Date.now() - started,
    chatWrapper: () => (wrapper ??= import("node-llama-cpp").then(({ resolveChatWrapper }) => resolveChatWrapper(model))),
    dispose: async () => {
      await context.dispose();
      await weights.release();
    },
  };
}
