/**
 * Encodings of float32 data into the GGUF tensor types a converter writes (F32, F16, BF16, Q8_0),
 * bit for bit what llama.cpp's gguf-py writes (gguf/quants.py): F16 rounds to nearest even like numpy's
 * astype(float16), BF16 follows ggml_compute_fp32_to_bf16, Q8_0 follows quantize_row_q8_0_ref. Little
 * endian only, like every machine llama.cpp runs on here.
 */
import { tensorBytes } from "./ggmlTypes.js";

export const GGML_TYPE = { F32: 0, F16: 1, Q8_0: 8, BF16: 30 } as const;
export type OutType = "f32" | "f16" | "bf16" | "q8_0";
export const OUT_TYPES: readonly OutType[] = ["f32", "f16", "bf16", "q8_0"];

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * float32 bits → IEEE half bits, round to nearest even; a NaN keeps its payload's top bits, like numpy.
 * Bits rather than a number: a signalling NaN read into a JS number comes back quieted.
 */
export function f32BitsToF16Bits(f: number): number {
  const sign = (f >>> 16) & 0x8000;
  const abs = f & 0x7fffffff;
  if (abs >= 0x7f800000) {
    if (abs === 0x7f800000) return sign | 0x7c00;
    const nan = 0x7c00 + ((abs & 0x007fffff) >>> 13);
    return sign | (nan === 0x7c00 ? 0x7c01 : nan);
  }
  if (abs >= 0x47800000) return sign | 0x7c00; // ≥ 65536 overflows whatever the rounding
  if (abs < 0x38800000) {
    // A half subnormal (or zero): value = m × 2^-24 with m rounded to nearest even.
    if (abs < 0x33000000) return sign; // below half the smallest subnormal
    const exp = abs >>> 23;
    const mant = (abs & 0x007fffff) | 0x00800000;
    const shift = 126 - exp; // 14..24 bits dropped
    const kept = mant >>> shift;
    const rest = mant - kept * 2 ** shift;
    const half = 2 ** (shift - 1);
    const up = rest > half || (rest === half && (kept & 1) === 1) ? 1 : 0;
    return sign | (kept + up);
  }
  // Normal: re-bias the exponent, drop 13 mantissa bits with round to nearest even; a carry rolls
  // into the exponent (and to infinity at the top), which is the right result.
  const base = ((abs - 0x38000000) >>> 13) & 0xffff;
  const rest = abs & 0x1fff;
  const up = rest > 0x1000 || (rest === 0x1000 && (base & 1) === 1) ? 1 : 0;
  return sign | (base + up);
}

export function f32ToF16Bits(x: number): number {
  f32[0] = x;
  return f32BitsToF16Bits(u32[0]!);
}

/** IEEE half bits → float (exact). */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** float32 bits → bfloat16 bits as ggml does it: NaN forced quiet, otherwise round to nearest even. */
export function f32BitsToBf16Bits(n: number): number {
  if ((n & 0x7fffffff) > 0x7f800000) return ((n >>> 16) | 64) & 0xffff;
  return Math.floor((n + (0x7fff + ((n >>> 16) & 1))) / 65536) & 0xffff;
}

export function bf16BitsToF32(b: number): number {
  u32[0] = (b << 16) >>> 0;
  return f32[0]!;
}

/** Round half away from zero, as gguf-py's np_roundf and ggml's roundf. */
function roundAway(v: number): number {
  return Math.sign(v) * Math.floor(Math.abs(v) + 0.5);
}

/**
 * Q8_0: blocks of 32 values along each row, each an F16 scale d = max|x|/127 and 32 int8 of
 * round(x/d). All arithmetic in float32 (Math.fround), as numpy does on float32 arrays.
 */
function encodeQ8_0(values: Float32Array, out: Buffer): void {
  const blocks = values.length / 32;
  for (let b = 0; b < blocks; b++) {
    let amax = 0;
    for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(values[b * 32 + i]!));
    const d = Math.fround(amax / 127);
    const id = d === 0 ? 0 : Math.fround(1 / d);
    const at = b * 34;
    out.writeUInt16LE(f32ToF16Bits(d), at);
    for (let i = 0; i < 32; i++) out.writeInt8(roundAway(Math.fround(values[b * 32 + i]! * id)), at + 2 + i);
  }
}

/** Whether a tensor whose rows are `rowLength` long can be stored as Q8_0 (gguf-py falls back to F16 otherwise). */
export function canQ8_0(rowLength: number): boolean {
  return rowLength % 32 === 0;
}

/** Encodes row-major float32 data of the given GGUF dims (dims[0] = row length) as `type`. */
export function encodeTensor(values: Float32Array, type: number, dims: readonly number[]): Buffer {
  const out = Buffer.alloc(tensorBytes(type, dims)!);
  switch (type) {
    case GGML_TYPE.F32:
      Buffer.from(values.buffer, values.byteOffset, values.byteLength).copy(out);
      return out;
    case GGML_TYPE.F16:
    case GGML_TYPE.BF16: {
      const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
      const convert = type === GGML_TYPE.F16 ? f32BitsToF16Bits : f32BitsToBf16Bits;
      for (let i = 0; i < bits.length; i++) out.writeUInt16LE(convert(bits[i]!), i * 2);
      return out;
    }
    case GGML_TYPE.Q8_0:
      if (!canQ8_0(dims[0]!)) throw new RangeError(`Q8_0 needs rows that are a multiple of 32 long, not ${dims[0]}`);
      encodeQ8_0(values, out);
      return out;
    default:
      throw new RangeError(`encoding ggml type ${type} is not supported`);
  }
}
