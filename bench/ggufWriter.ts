/**
 * A llama-architecture model for benchmarks, written with src/backends/gguf/writer.ts: a chosen shape
 * with random F16 weights and a synthetic SentencePiece vocabulary, so llama.cpp loads, quantizes and
 * runs it. The weights are noise: good for speed, meaningless for quality.
 */
import { randomBytes } from "node:crypto";
import { type GgufMetaValue, type GgufTensorOut, writeGguf } from "../src/backends/gguf/writer.js";

export interface LlamaShape {
  name: string;
  vocab: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  ffn: number;
  context: number;
  /** Tied embeddings (SmolLM2): no output.weight tensor. */
  tied: boolean;
}

/** HuggingFaceTB/SmolLM2-135M's config: 134.5M parameters. */
export const SMOLLM2_135M: LlamaShape = { name: "SmolLM2-135M-shaped (random)", vocab: 49152, hidden: 576, layers: 30, heads: 9, kvHeads: 3, ffn: 1536, context: 8192, tied: true };

/** Qwen/Qwen2.5-0.5B's dimensions (494M parameters) in the llama layout (no attention biases): a bigger realistic size. */
export const QWEN25_05B: LlamaShape = { name: "Qwen2.5-0.5B-shaped (random)", vocab: 151936, hidden: 896, layers: 24, heads: 14, kvHeads: 2, ffn: 4864, context: 32768, tied: true };

export const SHAPES: Record<string, LlamaShape> = { "smollm2-135m": SMOLLM2_135M, "qwen2.5-0.5b": QWEN25_05B };

const GGML_F32 = 0;
const GGML_F16 = 1;

/** <unk> <s> </s>, the 256 byte-fallback tokens, then made-up word pieces up to `size`. */
function vocabulary(size: number): { tokens: string[]; scores: number[]; types: number[] } {
  const tokens = ["<unk>", "<s>", "</s>"];
  const types = [2, 3, 3]; // unknown, control, control
  for (let i = 0; i < 256; i++) {
    tokens.push(`<0x${i.toString(16).toUpperCase().padStart(2, "0")}>`);
    types.push(6); // byte
  }
  for (let i = 0; tokens.length < size; i++) {
    tokens.push(`\u2581w${i.toString(36)}`);
    types.push(1); // normal
  }
  return { tokens, scores: tokens.map((_, i) => -i), types };
}

interface TensorSpec {
  name: string;
  dims: number[];
  type: typeof GGML_F32 | typeof GGML_F16;
}

function tensors(s: LlamaShape): TensorSpec[] {
  const headDim = s.hidden / s.heads;
  const out: TensorSpec[] = [{ name: "token_embd.weight", dims: [s.hidden, s.vocab], type: GGML_F16 }];
  for (let i = 0; i < s.layers; i++) {
    const p = `blk.${i}.`;
    out.push(
      { name: `${p}attn_norm.weight`, dims: [s.hidden], type: GGML_F32 },
      { name: `${p}attn_q.weight`, dims: [s.hidden, s.hidden], type: GGML_F16 },
      { name: `${p}attn_k.weight`, dims: [s.hidden, headDim * s.kvHeads], type: GGML_F16 },
      { name: `${p}attn_v.weight`, dims: [s.hidden, headDim * s.kvHeads], type: GGML_F16 },
      { name: `${p}attn_output.weight`, dims: [s.hidden, s.hidden], type: GGML_F16 },
      { name: `${p}ffn_norm.weight`, dims: [s.hidden], type: GGML_F32 },
      { name: `${p}ffn_gate.weight`, dims: [s.hidden, s.ffn], type: GGML_F16 },
      { name: `${p}ffn_up.weight`, dims: [s.hidden, s.ffn], type: GGML_F16 },
      { name: `${p}ffn_down.weight`, dims: [s.ffn, s.hidden], type: GGML_F16 },
    );
  }
  out.push({ name: "output_norm.weight", dims: [s.hidden], type: GGML_F32 });
  if (!s.tied) out.push({ name: "output.weight", dims: [s.hidden, s.vocab], type: GGML_F16 });
  return out;
}

/**
 * Random F16 values of weight-like magnitude (2^-10 … 2^-3, either sign), as raw bits: sign, an
 * exponent field of 5–12 and a random mantissa. Never NaN or Inf.
 */
function randomF16(count: number): Buffer {
  const raw = randomBytes(count * 2);
  for (let i = 0; i < count; i++) {
    const r = raw.readUInt16LE(i * 2);
    const exp = 5 + (r >> 13); // 5..12
    raw.writeUInt16LE((r & 0x8000) | (exp << 10) | (r & 0x3ff), i * 2);
  }
  return raw;
}

/** Writes the model; returns its parameter count and size in bytes. */
export function writeLlamaGguf(file: string, s: LlamaShape, chatTemplate?: string): { parameters: number; bytes: number } {
  const vocab = vocabulary(s.vocab);
  const u32 = (value: number): GgufMetaValue => ({ type: "u32", value });
  const f32 = (value: number): GgufMetaValue => ({ type: "f32", value });
  const str = (value: string): GgufMetaValue => ({ type: "string", value });
  const kv: [string, GgufMetaValue][] = [
    ["general.architecture", str("llama")],
    ["general.name", str(s.name)],
    ["general.file_type", u32(1)], // MOSTLY_F16
    ["general.alignment", u32(32)],
    ["llama.context_length", u32(s.context)],
    ["llama.embedding_length", u32(s.hidden)],
    ["llama.block_count", u32(s.layers)],
    ["llama.feed_forward_length", u32(s.ffn)],
    ["llama.attention.head_count", u32(s.heads)],
    ["llama.attention.head_count_kv", u32(s.kvHeads)],
    ["llama.rope.dimension_count", u32(s.hidden / s.heads)],
    ["llama.rope.freq_base", f32(100000)],
    ["llama.attention.layer_norm_rms_epsilon", f32(1e-5)],
    ["llama.vocab_size", u32(s.vocab)],
    ["tokenizer.ggml.model", str("llama")],
    ["tokenizer.ggml.tokens", { type: "array", itemType: "string", values: vocab.tokens }],
    ["tokenizer.ggml.scores", { type: "array", itemType: "f32", values: vocab.scores }],
    ["tokenizer.ggml.token_type", { type: "array", itemType: "i32", values: vocab.types }],
    ["tokenizer.ggml.unknown_token_id", u32(0)],
    ["tokenizer.ggml.bos_token_id", u32(1)],
    ["tokenizer.ggml.eos_token_id", u32(2)],
    ["tokenizer.ggml.add_bos_token", { type: "bool", value: true }],
    ...(chatTemplate ? [["tokenizer.chat_template", str(chatTemplate)] as [string, GgufMetaValue]] : []),
  ];
  const specs = tensors(s);
  let parameters = 0;
  const out: GgufTensorOut[] = specs.map((t) => {
    const n = t.dims.reduce((a, b) => a * b, 1);
    parameters += n;
    return {
      ...t,
      data: function* () {
        if (t.type === GGML_F32) {
          yield Buffer.from(new Float32Array(n).fill(1).buffer); // RMS-norm weights start at 1
          return;
        }
        // In 8 Mi-value pieces, so a 28M-value embedding does not need one giant buffer.
        for (let done = 0; done < n; ) {
          const k = Math.min(n - done, 8 << 20);
          yield randomF16(k);
          done += k;
        }
      },
    };
  });
  return { parameters, bytes: writeGguf(file, kv, out) };
}

/**
 * A LoRA adapter for a model of shape `s`, as llama.cpp loads one (general.type "adapter"): rank-`rank`
 * F16 A and B matrices on every linear layer of the decoder blocks (PEFT's "all-linear"), random values.
 */
export function writeLlamaLoraGguf(file: string, s: LlamaShape, rank: number): { parameters: number; bytes: number } {
  const headDim = s.hidden / s.heads;
  const kvOut = headDim * s.kvHeads;
  // [input, output] of each adapted weight; llama.cpp wants lora_a as [input, rank] and lora_b as [rank, output].
  const linear: [string, number, number][] = [
    ["attn_q", s.hidden, s.hidden],
    ["attn_k", s.hidden, kvOut],
    ["attn_v", s.hidden, kvOut],
    ["attn_output", s.hidden, s.hidden],
    ["ffn_gate", s.hidden, s.ffn],
    ["ffn_up", s.hidden, s.ffn],
    ["ffn_down", s.ffn, s.hidden],
  ];
  const specs: TensorSpec[] = [];
  for (let i = 0; i < s.layers; i++) {
    for (const [w, input, output] of linear) {
      specs.push({ name: `blk.${i}.${w}.weight.lora_a`, dims: [input, rank], type: GGML_F16 }, { name: `blk.${i}.${w}.weight.lora_b`, dims: [rank, output], type: GGML_F16 });
    }
  }
  const kv: [string, GgufMetaValue][] = [
    ["general.architecture", { type: "string", value: "llama" }],
    ["general.type", { type: "string", value: "adapter" }],
    ["general.alignment", { type: "u32", value: 32 }],
    ["adapter.type", { type: "string", value: "lora" }],
    ["adapter.lora.alpha", { type: "f32", value: 2 * rank }],
  ];
  let parameters = 0;
  const out: GgufTensorOut[] = specs.map((t) => {
    const n = t.dims.reduce((a, b) => a * b, 1);
    parameters += n;
    return { ...t, data: () => [randomF16(n)] };
  });
  return { parameters, bytes: writeGguf(file, kv, out) };
}
