/**
 * A minimal GGUF (v3) writer for benchmarks: a llama-architecture model of a chosen shape with random
 * F16 weights and a synthetic SentencePiece vocabulary, so llama.cpp loads, quantizes and runs it.
 * The weights are noise: good for speed, meaningless for quality.
 */
import { randomBytes } from "node:crypto";
import { closeSync, openSync, writeSync } from "node:fs";

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

const T = { U32: 4, I32: 5, F32: 6, BOOL: 7, STRING: 8, ARRAY: 9 } as const;
const GGML_F32 = 0;
const GGML_F16 = 1;
const ALIGN = 32;

type Value = { t: "u32"; v: number } | { t: "f32"; v: number } | { t: "bool"; v: boolean } | { t: "str"; v: string } | { t: "strs"; v: string[] } | { t: "f32s"; v: number[] } | { t: "i32s"; v: number[] };

class Buf {
  private parts: Buffer[] = [];
  size = 0;
  push(b: Buffer): void {
    this.parts.push(b);
    this.size += b.length;
  }
  u32(n: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    this.push(b);
  }
  i32(n: number): void {
    const b = Buffer.alloc(4);
    b.writeInt32LE(n);
    this.push(b);
  }
  u64(n: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(n));
    this.push(b);
  }
  f32(n: number): void {
    const b = Buffer.alloc(4);
    b.writeFloatLE(n);
    this.push(b);
  }
  str(s: string): void {
    const b = Buffer.from(s, "utf8");
    this.u64(b.length);
    this.push(b);
  }
  concat(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function writeValue(b: Buf, key: string, val: Value): void {
  b.str(key);
  switch (val.t) {
    case "u32":
      b.u32(T.U32);
      b.u32(val.v);
      return;
    case "f32":
      b.u32(T.F32);
      b.f32(val.v);
      return;
    case "bool":
      b.u32(T.BOOL);
      b.push(Buffer.from([val.v ? 1 : 0]));
      return;
    case "str":
      b.u32(T.STRING);
      b.str(val.v);
      return;
    case "strs":
      b.u32(T.ARRAY);
      b.u32(T.STRING);
      b.u64(val.v.length);
      for (const s of val.v) b.str(s);
      return;
    case "f32s":
      b.u32(T.ARRAY);
      b.u32(T.F32);
      b.u64(val.v.length);
      for (const x of val.v) b.f32(x);
      return;
    case "i32s":
      b.u32(T.ARRAY);
      b.u32(T.I32);
      b.u64(val.v.length);
      for (const x of val.v) b.i32(x);
      return;
  }
}

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

const pad = (n: number) => (ALIGN - (n % ALIGN)) % ALIGN;

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
  const kv: [string, Value][] = [
    ["general.architecture", { t: "str", v: "llama" }],
    ["general.name", { t: "str", v: s.name }],
    ["general.file_type", { t: "u32", v: 1 }], // MOSTLY_F16
    ["general.alignment", { t: "u32", v: ALIGN }],
    ["llama.context_length", { t: "u32", v: s.context }],
    ["llama.embedding_length", { t: "u32", v: s.hidden }],
    ["llama.block_count", { t: "u32", v: s.layers }],
    ["llama.feed_forward_length", { t: "u32", v: s.ffn }],
    ["llama.attention.head_count", { t: "u32", v: s.heads }],
    ["llama.attention.head_count_kv", { t: "u32", v: s.kvHeads }],
    ["llama.rope.dimension_count", { t: "u32", v: s.hidden / s.heads }],
    ["llama.rope.freq_base", { t: "f32", v: 100000 }],
    ["llama.attention.layer_norm_rms_epsilon", { t: "f32", v: 1e-5 }],
    ["llama.vocab_size", { t: "u32", v: s.vocab }],
    ["tokenizer.ggml.model", { t: "str", v: "llama" }],
    ["tokenizer.ggml.tokens", { t: "strs", v: vocab.tokens }],
    ["tokenizer.ggml.scores", { t: "f32s", v: vocab.scores }],
    ["tokenizer.ggml.token_type", { t: "i32s", v: vocab.types }],
    ["tokenizer.ggml.unknown_token_id", { t: "u32", v: 0 }],
    ["tokenizer.ggml.bos_token_id", { t: "u32", v: 1 }],
    ["tokenizer.ggml.eos_token_id", { t: "u32", v: 2 }],
    ["tokenizer.ggml.add_bos_token", { t: "bool", v: true }],
    ...(chatTemplate ? [["tokenizer.chat_template", { t: "str", v: chatTemplate }] as [string, Value]] : []),
  ];
  const specs = tensors(s);
  const head = new Buf();
  head.push(Buffer.from("GGUF", "ascii"));
  head.u32(3);
  head.u64(specs.length);
  head.u64(kv.length);
  for (const [k, v] of kv) writeValue(head, k, v);
  let offset = 0;
  const offsets: number[] = [];
  for (const t of specs) {
    head.str(t.name);
    head.u32(t.dims.length);
    for (const d of t.dims) head.u64(d);
    head.u32(t.type);
    head.u64(offset);
    offsets.push(offset);
    const n = t.dims.reduce((a, b) => a * b, 1) * (t.type === GGML_F16 ? 2 : 4);
    offset += n + pad(n);
  }
  const header = head.concat();
  const fd = openSync(file, "w");
  let bytes = 0;
  const put = (b: Buffer) => {
    writeSync(fd, b);
    bytes += b.length;
  };
  try {
    put(header);
    put(Buffer.alloc(pad(header.length)));
    let parameters = 0;
    for (const t of specs) {
      const n = t.dims.reduce((a, b) => a * b, 1);
      parameters += n;
      if (t.type === GGML_F32) {
        const b = Buffer.alloc(n * 4);
        for (let i = 0; i < n; i++) b.writeFloatLE(1, i * 4); // RMS-norm weights start at 1
        put(b);
        put(Buffer.alloc(pad(b.length)));
      } else {
        // In 8 Mi-value pieces, so a 28M-value embedding does not need one giant buffer.
        for (let done = 0; done < n; ) {
          const k = Math.min(n - done, 8 << 20);
          put(randomF16(k));
          done += k;
        }
        put(Buffer.alloc(pad(n * 2)));
      }
    }
    return { parameters, bytes };
  } finally {
    closeSync(fd);
  }
}
