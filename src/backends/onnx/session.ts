import { availableParallelism } from "node:os";
import type { InferenceSession, Tensor } from "onnxruntime-node";
import { UsageError } from "../../core/errors.js";
import { otherProcessesCores } from "../llama/settings.js";
import type { Ort } from "./ort.js";

/**
 * One onnxruntime session of a decoder-only model in the Optimum / transformers.js layout, and the KV
 * cache that goes with it: inputs `input_ids`, `attention_mask`, optional `position_ids` (and
 * `use_cache_branch` in older merged decoders), `past_key_values.{i}.key|value`; outputs `logits`,
 * `present.{i}.key|value`. Each call feeds the new tokens with the cache so far and keeps the presents
 * as the next call's past: prompt processing is one call per batch, generation one call per token.
 */
export interface KvLayout {
  layers: number;
  kvHeads: number;
  headDim: number;
  kvType: "float32" | "float16";
  positionIds: boolean;
  useCacheBranch: boolean;
  /** `logits_to_keep` (or `num_logits_to_keep`) in newer exports: fed 0 (transformers' "every position") or 1 (the last). */
  logitsToKeep: string | undefined;
}

/** Which rows of logits a call returns: every new position's, the last one's, or none (the cache only). */
export type LogitRows = "all" | "last" | "none";

/** Logits of `rows` positions, rows × vocab, float32. */
export interface Logits {
  logits: Float32Array;
  rows: number;
  vocab: number;
}

/** The inputs slm knows how to feed; a graph that needs another is refused when it loads. */
const KNOWN_INPUT = /^(input_ids|attention_mask|position_ids|use_cache_branch|logits_to_keep|num_logits_to_keep|past_key_values\.\d+\.(key|value))$/;

/** Threads as slm chooses them for llama.cpp (llama/settings.ts): --threads, SLM_THREADS, else the cores other processes leave free. */
export function chooseThreads(requested: number | undefined): number {
  if (requested) return requested;
  const fromEnv = Number(process.env.SLM_THREADS);
  if (Number.isInteger(fromEnv) && fromEnv > 0) return fromEnv;
  const cores = availableParallelism();
  const others = otherProcessesCores();
  const free = others === undefined ? cores : Math.floor(cores - others + 0.25);
  return Math.max(1, Math.min(cores, free));
}

/** The KV cache of one slot: the presents of the last call and the tokens they hold. */
export class KvCache {
  tensors: Record<string, Tensor> = {};
  tokens: number[] = [];

  get length(): number {
    return this.tokens.length;
  }
}

function firstLine(err: unknown): string {
  return String((err as Error)?.message ?? err).split("\n")[0]!.trim();
}

export class OnnxSession {
  /** Calls run one at a time: slots share the session, and two runs would split the same cores. */
  private queue: Promise<unknown> = Promise.resolve();
  private readonly presentNames: readonly string[];

  private constructor(
    private readonly ort: Ort,
    readonly session: InferenceSession,
    readonly layout: KvLayout,
    readonly file: string,
  ) {
    this.presentNames = session.outputNames.filter((n) => n.startsWith("present."));
  }

  /**
   * A session on `file`; a file onnxruntime cannot read (truncated, not ONNX, missing external data)
   * and a graph without the decoder's inputs and outputs are UsageErrors naming the file.
   */
  static async create(ort: Ort, file: string, o: { threads: number; config: Record<string, unknown> }): Promise<OnnxSession> {
    let session: InferenceSession;
    try {
      session = await ort.InferenceSession.create(file, {
        intraOpNumThreads: o.threads,
        // One op at a time: the decoder's graph is a chain, and a second pool would compete for the same cores.
        interOpNumThreads: 1,
        executionMode: "sequential",
        graphOptimizationLevel: "all",
        executionProviders: ["cpu"],
      });
    } catch (err) {
      throw new UsageError(`${file} cannot be loaded by onnxruntime: ${firstLine(err)}`, {
        hint: "The file may be truncated or not an ONNX model: download or export it again.",
      });
    }
    return new OnnxSession(ort, session, layoutOf(session, o.config, file), file);
  }

  /** Empty past tensors for a fresh cache. */
  private emptyPast(): Record<string, Tensor> {
    const { layers, kvHeads, headDim, kvType } = this.layout;
    const out: Record<string, Tensor> = {};
    for (let i = 0; i < layers; i++) {
      for (const kind of ["key", "value"]) {
        out[`past_key_values.${i}.${kind}`] = new this.ort.Tensor(kvType, kvType === "float32" ? new Float32Array(0) : new Uint16Array(0), [1, kvHeads, 0, headDim]);
      }
    }
    return out;
  }

  /**
   * Evaluates `tokens` after what `cache` holds and keeps their keys and values in it. Returns the logits
   * (rows × vocab, float32) of every new position (`"all"`), of the last one only (`"last"`), or none.
   */
  forward(cache: KvCache, tokens: readonly number[], want: LogitRows = "all", firstPosition = cache.length): Promise<Logits> {
    const next = this.queue.then(() => this.evaluate(cache, tokens, want, firstPosition));
    this.queue = next.catch(() => undefined);
    return next;
  }

  /**
   * Whether the graph can evaluate a token at `position` (0-based). A graph with a table of positions
   * (learned position embeddings, a precomputed rotary cache) fails past the table's end; one that
   * computes its rotary angles from position_ids (slm's and transformers' exports) does not. With a
   * position_ids input, one token is fed at that position; without, after a zero past of that length.
   */
  async takesPosition(position: number): Promise<boolean> {
    const cache = new KvCache();
    if (!this.layout.positionIds) {
      const { layers, kvHeads, headDim, kvType } = this.layout;
      const size = kvHeads * position * headDim;
      for (let i = 0; i < layers; i++) {
        for (const kind of ["key", "value"]) {
          cache.tensors[`present.${i}.${kind}`] = new this.ort.Tensor(kvType, kvType === "float32" ? new Float32Array(size) : new Uint16Array(size), [1, kvHeads, position, headDim]);
        }
      }
      cache.tokens = new Array<number>(position).fill(0);
    }
    try {
      await this.forward(cache, [0], "all", position);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * onnxruntime-node copies every fetched output into a new JavaScript buffer: the logits of a 512-token
   * batch are ~100 MB, and copying them cost prompt processing about a quarter of its time (Python's
   * binding hands the buffer over without a copy). Where only the last row is wanted, the graph is asked
   * for it (`logits_to_keep`: 1), or else the tokens before the last run without fetching the logits and
   * the last one runs alone, as llama.cpp computes only the last position's logits of a prompt.
   */
  private async evaluate(cache: KvCache, tokens: readonly number[], want: LogitRows, firstPosition: number): Promise<Logits> {
    if (want !== "last" || tokens.length === 1 || this.layout.logitsToKeep) return this.run(cache, tokens, want, firstPosition);
    await this.run(cache, tokens.slice(0, -1), "none", firstPosition);
    return this.run(cache, tokens.slice(-1), "all", firstPosition + tokens.length - 1);
  }

  private async run(cache: KvCache, tokens: readonly number[], want: LogitRows, firstPosition: number): Promise<Logits> {
    const ort = this.ort;
    const past = cache.length;
    const total = past + tokens.length;
    const ids = new BigInt64Array(tokens.length);
    for (let i = 0; i < tokens.length; i++) ids[i] = BigInt(tokens[i]!);
    const feeds: Record<string, Tensor> = {
      input_ids: new ort.Tensor("int64", ids, [1, tokens.length]),
      attention_mask: new ort.Tensor("int64", new BigInt64Array(total).fill(1n), [1, total]),
      ...(past === 0 ? this.emptyPast() : pastOf(cache.tensors)),
    };
    if (this.layout.positionIds) {
      const pos = new BigInt64Array(tokens.length);
      for (let i = 0; i < tokens.length; i++) pos[i] = BigInt(firstPosition + i);
      feeds.position_ids = new ort.Tensor("int64", pos, [1, tokens.length]);
    }
    // 0 is transformers' "every position".
    if (this.layout.logitsToKeep) feeds[this.layout.logitsToKeep] = new ort.Tensor("int64", BigInt64Array.of(want === "all" ? 0n : 1n), []);
    if (this.layout.useCacheBranch) feeds.use_cache_branch = new ort.Tensor("bool", new Uint8Array([past > 0 ? 1 : 0]), [1]);
    const out = await this.session.run(feeds, want === "none" ? this.presentNames : this.session.outputNames);
    const presents: Record<string, Tensor> = {};
    for (const [name, t] of Object.entries(out)) if (name.startsWith("present.")) presents[name] = t;
    cache.tensors = presents;
    cache.tokens.push(...tokens);
    if (want === "none") return { logits: new Float32Array(0), rows: 0, vocab: 0 };
    const logits = out.logits!;
    const vocab = logits.dims[logits.dims.length - 1]!;
    const rows = logits.dims[logits.dims.length - 2]!;
    return { logits: toFloat32(logits), rows, vocab };
  }

  /** Keeps the first `keep` positions of the cache (a prompt that shares that much with the last one). */
  truncate(cache: KvCache, keep: number): void {
    if (keep >= cache.length) return;
    if (keep <= 0) {
      cache.tensors = {};
      cache.tokens = [];
      return;
    }
    const { kvHeads, headDim } = this.layout;
    const old = cache.length;
    for (const [name, t] of Object.entries(cache.tensors)) {
      const src = t.data as Float32Array | Uint16Array;
      const dst = new (src.constructor as Float32ArrayConstructor | Uint16ArrayConstructor)(kvHeads * keep * headDim);
      // [1, heads, positions, headDim]: each head's first `keep` rows.
      for (let h = 0; h < kvHeads; h++) dst.set(src.subarray(h * old * headDim, h * old * headDim + keep * headDim), h * keep * headDim);
      cache.tensors[name] = new this.ort.Tensor(t.type as "float32", dst, [1, kvHeads, keep, headDim]);
    }
    cache.tokens = cache.tokens.slice(0, keep);
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}

function pastOf(presents: Record<string, Tensor>): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(presents)) out[`past_key_values.${name.slice("present.".length)}`] = t;
  return out;
}

/** Logits as float32 (fp16 graphs may return float16). */
function toFloat32(t: Tensor): Float32Array {
  if (t.type === "float32") return t.data as Float32Array;
  if (t.type === "float16") {
    const src = t.data as Uint16Array;
    const out = new Float32Array(src.length);
    for (let i = 0; i < src.length; i++) out[i] = halfToFloat(src[i]!);
    return out;
  }
  throw new UsageError(`The model's logits are ${t.type}; slm reads float32 or float16 logits.`);
}

export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 0x1f) return frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

/** Reads the cache's shape from the graph's own inputs (config.json where an axis is symbolic) and checks the layout. */
function layoutOf(session: InferenceSession, config: Record<string, unknown>, file: string): KvLayout {
  const inputs = new Map(session.inputMetadata.map((m) => [m.name, m]));
  const outputs = new Set(session.outputNames);
  const missing = [
    ...["input_ids", "attention_mask", "past_key_values.0.key", "past_key_values.0.value"].filter((n) => !inputs.has(n)),
    ...["logits", "present.0.key", "present.0.value"].filter((n) => !outputs.has(n)),
  ];
  if (missing.length > 0) {
    throw new UsageError(`${file} is not a decoder with a KV cache in the transformers.js layout: it lacks ${missing.join(", ")} (it has inputs ${[...inputs.keys()].slice(0, 6).join(", ")}…).`, {
      hint: "Export the model with its KV cache (`slm export <model> --format onnx`), or pick a text-generation ONNX export such as onnx-community's.",
    });
  }
  const unknown = [...inputs.keys()].filter((n) => !KNOWN_INPUT.test(n));
  if (unknown.length > 0) {
    throw new UsageError(`${file} takes inputs slm does not know how to feed: ${unknown.join(", ")}.`, { hint: "slm runs text-only decoder exports (input_ids, attention_mask, position_ids, past_key_values.*)." });
  }
  const layers = [...inputs.keys()].filter((n) => /^past_key_values\.\d+\.key$/.test(n)).length;
  const key = inputs.get("past_key_values.0.key")!;
  const shape = key.isTensor ? key.shape : [];
  const num = (v: unknown) => (typeof v === "number" && v > 0 ? v : undefined);
  const heads = num(config.num_attention_heads);
  const kvHeads = num(shape[1]) ?? num(config.num_key_value_heads) ?? heads;
  const headDim = num(shape[3]) ?? num(config.head_dim) ?? (num(config.hidden_size) && heads ? (config.hidden_size as number) / heads : undefined);
  if (!kvHeads || !headDim) throw new UsageError(`${file}: the KV cache's head count and size are neither in the graph nor in config.json.`);
  const kvType = key.isTensor && key.type === "float16" ? "float16" : "float32";
  const logitsToKeep = ["logits_to_keep", "num_logits_to_keep"].find((n) => inputs.has(n));
  return { layers, kvHeads, headDim, kvType, positionIds: inputs.has("position_ids"), useCacheBranch: inputs.has("use_cache_branch"), logitsToKeep };
}
