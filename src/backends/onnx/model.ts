import { existsSync, statSync } from "node:fs";
import { emit, type BackendContext } from "../../core/events.js";
import { UsageError } from "../../core/errors.js";
import type { ChatEngineApi, ChatEngineOptions } from "../llama/chat.js";
import type { GenerationSlot, RuntimeLoadOptions, RuntimeModel } from "../runtime/types.js";
import type { ModelEntry } from "../store/types.js";
import { OnnxChatEngine } from "./chat.js";
import { readOnnxFolder } from "./folder.js";
import { onnxBench, onnxPerplexity } from "./measure.js";
import { loadOrt } from "./ort.js";
import { KvCache, OnnxSession, chooseThreads } from "./session.js";
import { type ModelParts, OnnxSlot, chatTokens, noChatTemplate } from "./slot.js";
import { ChatTemplate, readChatTemplate, templateTokens } from "./template.js";
import { OnnxTokenizer } from "./tokenizer.js";
import { countOf } from "../../core/format.js";

/** Tokens per call while processing a prompt, as llama.cpp's default batch. */
const DEFAULT_BATCH = 512;
/** Without --ctx: the model's training length, at most this (as the llama.cpp runtime caps it). */
const MAX_DEFAULT_CONTEXT = 4096;

function num(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) && v > 0 ? v : undefined;
}

/** Parameters of a Llama-shaped decoder from config.json (an estimate for other shapes; bench's params column). */
export function estimateParameters(config: Record<string, unknown>): number {
  const h = num(config.hidden_size) ?? 0;
  const layers = num(config.num_hidden_layers) ?? 0;
  const heads = num(config.num_attention_heads) ?? 1;
  const kvHeads = num(config.num_key_value_heads) ?? heads;
  const headDim = num(config.head_dim) ?? h / heads;
  const inter = num(config.intermediate_size) ?? 4 * h;
  const vocab = num(config.vocab_size) ?? 0;
  const attention = h * heads * headDim * 2 + h * kvHeads * headDim * 2;
  const perLayer = attention + 3 * h * inter + 2 * h;
  return vocab * h * (config.tie_word_embeddings === true ? 1 : 2) + layers * perLayer + h;
}

function fileBytes(file: string): number {
  let size = statSync(file).size;
  // External data (>2 GB models, and some exports of any size) lives beside the graph.
  for (const extra of [`${file}_data`, `${file}.data`]) if (existsSync(extra)) size += statSync(extra).size;
  return size;
}

/**
 * The context of each slot. Without --ctx: the training length, at most 4096. A --ctx past the training
 * length is honoured, with a warning as llama.cpp gives, when the graph takes such positions (rotary
 * angles computed from position_ids, as slm's exports have: the KV cache grows only as it is used, so
 * a large --ctx costs nothing up front); a graph with a table of positions is capped at its training
 * length, saying why, and a prompt too long for it is not told to give a larger --ctx.
 */
async function chooseContext(name: string, session: OnnxSession, config: Record<string, unknown>, asked: number | undefined, ctx: BackendContext): Promise<{ contextSize: number; contextLimitHint?: string }> {
  const train = num(config.max_position_embeddings);
  if (!asked) return { contextSize: Math.min(train ?? MAX_DEFAULT_CONTEXT, MAX_DEFAULT_CONTEXT) };
  if (!train || asked <= train) return { contextSize: asked };
  if (await session.takesPosition(asked - 1)) {
    emit(ctx.onEvent, { type: "log", level: "warn", message: `--ctx ${asked} is more than ${name} was trained on (${train} tokens): positions past ${train} are ones it never saw, and its answers there may be poor.` });
    return { contextSize: asked };
  }
  emit(ctx.onEvent, { type: "log", level: "warn", message: `--ctx ${asked} is more than ${name}'s graph takes: using its training length, ${train} tokens.` });
  return { contextSize: train, contextLimitHint: `${name}'s graph takes at most ${train} positions (its training length); shorten the prompt.` };
}

/**
 * An ONNX model folder loaded on onnxruntime-node, behind the runtime interface (runtime/types.ts).
 * The folder is read and checked first (folder.ts: config, tokenizer, variant), so a bad folder fails
 * with a clear message before the ~290 MB native runtime is even imported.
 */
export async function loadOnnxModel(entry: ModelEntry, o: RuntimeLoadOptions, ctx: BackendContext = {}): Promise<RuntimeModel> {
  if (o.lora && o.lora.length > 0) {
    throw new UsageError(`${entry.name} is an ONNX model: LoRA adapters cannot be applied at run time.`, { hint: `Export the merged fine-tune instead: slm export ${entry.name}+<adapter> --format onnx.` });
  }
  if (o.gpu && o.gpu !== "auto" && o.gpu !== "off") throw new UsageError(`--gpu ${o.gpu} is for GGUF models; slm runs ONNX models on onnxruntime's CPU provider.`);
  const started = performance.now();
  const folder = readOnnxFolder(entry.path, { dtype: o.dtype ?? entry.dtype, base: entry.onnx?.base, name: entry.name });
  const tokenizer = new OnnxTokenizer({ tokenizer: folder.tokenizerJson, config: folder.tokenizerConfig });
  const templateSource = readChatTemplate(folder.dir, folder.tokenizerConfig);
  const template = templateSource !== undefined ? new ChatTemplate(templateSource, templateTokens(folder.tokenizerConfig), entry.name) : undefined;
  // Said before the runtime and the graph are loaded, not at the first message.
  if (o.chat && !template) throw noChatTemplate(entry.name);
  const threads = chooseThreads(o.threads);
  const file = folder.file.slice(folder.dir.length + 1);
  emit(ctx.onEvent, { type: "step", id: "onnx:session", status: "start", title: `Loading ${entry.name} (${folder.dtype}, ${file})` });
  const ort = await loadOrt();
  const session = await OnnxSession.create(ort, folder.file, { threads, config: folder.config });
  const loadMs = Math.round(performance.now() - started);
  emit(ctx.onEvent, { type: "step", id: "onnx:session", status: "done", title: `Loaded ${entry.name}`, detail: `${countOf(threads, "thread")}, ${loadMs} ms` });

  const { contextSize, contextLimitHint } = await chooseContext(entry.name, session, folder.config, o.contextSize, ctx);
  const vocabSize = num(folder.config.vocab_size) ?? 0;
  const eos = new Set(folder.eos);
  if (eos.size === 0 && tokenizer.idOf(String(folder.tokenizerConfig.eos_token)) !== undefined) eos.add(tokenizer.idOf(String(folder.tokenizerConfig.eos_token))!);
  const parts: ModelParts = { name: entry.name, session, tokenizer, template, eos, contextSize, batchSize: o.batchSize ?? DEFAULT_BATCH, vocabSize, loadMs, onEvent: ctx.onEvent, contextLimitHint };
  const sequences = Math.max(1, o.sequences ?? 1);
  let open = 0;
  const description = `onnx ${folder.dtype} (${file})`;
  const parameters = entry.parameters ?? estimateParameters(folder.config);

  const newSlot = (counted: boolean) => {
    if (counted) {
      if (open >= sequences) throw new UsageError(`All ${sequences} slots of ${entry.name} are in use.`);
      open++;
    }
    return new OnnxSlot(parts, counted ? () => open-- : undefined);
  };

  const model: RuntimeModel = {
    runtime: "onnxruntime",
    entry,
    description,
    loadMs,
    contextSize,
    threads,
    sequences,
    backend: "CPU",
    vocabSize,
    adapters: [],
    dtype: folder.dtype,
    // bos: a raw prompt's tokens as the model evaluates them (the tokenizer's leading BOS in front).
    tokenize: (text, t) => (t?.bos ? tokenizer.encodeWithLeading(text, t.special ?? false) : tokenizer.encode(text, t?.special ?? false)),
    detokenize: (tokens, o) => tokenizer.decode(tokens, o?.special ?? false),
    chatPrompt: async (messages) => chatTokens(parts, messages),
    openSlot: async (): Promise<GenerationSlot> => newSlot(true),
    async generate(g) {
      const slot = newSlot(false);
      try {
        return await slot.generate(g);
      } finally {
        slot.dispose();
      }
    },
    openChat: async (c: ChatEngineOptions): Promise<ChatEngineApi> => new OnnxChatEngine(parts, newSlot(false), c),
    // The first run of a session allocates its buffers; a server's first request should not wait for that.
    async warmUp() {
      await session.forward(new KvCache(), [tokenizer.bos ?? 0]);
    },
    perplexity: (text, p, pctx) => onnxPerplexity(parts, text, p, pctx),
    bench: (b, bctx) => onnxBench(parts, { path: folder.file, description, sizeBytes: fileBytes(folder.file), parameters, threads }, b, bctx),
    dispose: () => session.dispose(),
  };
  return model;
}
