import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { SlmError } from "../../core/errors.js";
import { tensorBytes } from "../gguf/ggmlTypes.js";

/**
 * The few GGUF header facts quantize needs (architecture, file type, context, parameter count, and
 * whether the file holds all its tensor data), read directly in a few milliseconds.
 *
 * Why not readGgufSummary: it imports node-llama-cpp, which takes 0.5–1 s on the 2-core machine. quantize
 * reads two headers (the source before, the output after) and its whole overhead over llama-quantize
 * is budgeted at 5 %; on a 135M model that budget is well under a second. (pull and info could use this
 * reader for the same reason: see docs/benchmarks.md.)
 */
export interface GgufHeader {
  version: number;
  architecture: string;
  /** general.file_type: llama.cpp's LLAMA_FTYPE number. */
  fileType?: number;
  contextLength?: number;
  parameters: number;
  tensorCount: number;
  /** Whether every tensor's data lies within the file (a short file is truncated). Split files: first part only. */
  complete: boolean;
  splitCount: number;
}

/** LLAMA_FTYPE numbers (llama.h) → the names llama-quantize and slm use. */
const FTYPE_NAMES: Record<number, string> = {
  0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L",
  14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
  23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M",
  32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
};

export function fileTypeName(ftype: number | undefined): string | undefined {
  if (ftype === undefined) return undefined;
  return FTYPE_NAMES[ftype] ?? `file type ${ftype}`;
}

/** Reads a file front to back through a buffer that grows only as far as the header goes. */
class Reader {
  private buf = Buffer.alloc(0);
  private start = 0; // file offset of buf[0]
  pos = 0; // file offset of the next byte
  constructor(
    private readonly fd: number,
    readonly size: number,
    private readonly file: string,
  ) {}
  private need(n: number): void {
    const have = this.start + this.buf.length - this.pos;
    if (have >= n) return;
    if (this.pos + n > this.size) throw notGguf(this.file, "the header runs past the end of the file");
    const keep = this.buf.subarray(this.pos - this.start);
    const more = Buffer.alloc(Math.max(n - keep.length, 1 << 20));
    const got = readSync(this.fd, more, 0, more.length, this.start + this.buf.length);
    this.buf = Buffer.concat([keep, more.subarray(0, got)]);
    this.start = this.pos;
  }
  private at(n: number): number {
    this.need(n);
    const o = this.pos - this.start;
    this.pos += n;
    return o;
  }
  // Each read takes the offset first: at() may replace this.buf, and `this.buf.readX(this.at(n))`
  // would read from the buffer it replaced (the member is evaluated before the argument).
  u8(): number {
    const o = this.at(1);
    return this.buf.readUInt8(o);
  }
  u32(): number {
    const o = this.at(4);
    return this.buf.readUInt32LE(o);
  }
  u64(): number {
    const o = this.at(8);
    const v = this.buf.readBigUInt64LE(o);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw notGguf(this.file, "a length is implausibly large");
    return Number(v);
  }
  i64(): number {
    const o = this.at(8);
    return Number(this.buf.readBigInt64LE(o));
  }
  skip(n: number): void {
    if (this.pos + n > this.size) throw notGguf(this.file, "the header runs past the end of the file");
    const inBuf = this.start + this.buf.length - this.pos;
    if (n <= inBuf) this.pos += n;
    else {
      this.pos += n;
      this.buf = Buffer.alloc(0);
      this.start = this.pos;
    }
  }
  str(): string {
    const n = this.u64();
    const o = this.at(n);
    return this.buf.toString("utf8", o, o + n);
  }
  bytes(n: number): Buffer {
    const o = this.at(n);
    return this.buf.subarray(o, o + n);
  }
}

function notGguf(file: string, why: string): SlmError {
  return new SlmError(`${file} is not a readable GGUF file (${why}).`, { hint: "It may be truncated or not a GGUF model; pull it again or check the path." });
}

const SCALAR_SIZE: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

type Scalar = number | string | boolean;

function readValue(r: Reader, type: number): Scalar | undefined {
  switch (type) {
    case 4:
      return r.u32();
    case 5:
      return r.bytes(4).readInt32LE(0);
    case 7:
      return r.u8() !== 0;
    case 8:
      return r.str();
    case 10:
      return r.u64();
    case 11:
      return r.i64();
    case 9: {
      // Arrays (the vocabulary) are skipped: quantize needs none of them.
      const itemType = r.u32();
      const n = r.u64();
      if (itemType === 8) for (let i = 0; i < n; i++) r.skip(r.u64());
      else if (SCALAR_SIZE[itemType] !== undefined) r.skip(n * SCALAR_SIZE[itemType]!);
      else throw new Error(`unsupported array item type ${itemType}`);
      return undefined;
    }
    default: {
      const size = SCALAR_SIZE[type];
      if (size === undefined) throw new Error(`unknown value type ${type}`);
      const b = r.bytes(size);
      return type === 6 ? b.readFloatLE(0) : type === 12 ? b.readDoubleLE(0) : size === 1 ? b.readUInt8(0) : b.readUInt16LE(0);
    }
  }
}

export function readGgufHeader(file: string): GgufHeader {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch (err) {
    throw notGguf(file, (err as Error).message);
  }
  try {
    const r = new Reader(fd, fstatSync(fd).size, file);
    if (r.size < 24 || r.bytes(4).toString("latin1") !== "GGUF") throw notGguf(file, "no GGUF magic");
    const version = r.u32();
    if (version < 2 || version > 3) throw notGguf(file, `GGUF version ${version} is not supported`);
    const tensorCount = r.u64();
    const kvCount = r.u64();
    const kv = new Map<string, Scalar>();
    for (let i = 0; i < kvCount; i++) {
      const key = r.str();
      const value = readValue(r, r.u32());
      if (value !== undefined) kv.set(key, value);
    }
    const architecture = typeof kv.get("general.architecture") === "string" ? (kv.get("general.architecture") as string) : "unknown";
    let parameters = 0;
    let end = 0;
    let known = true;
    for (let i = 0; i < tensorCount; i++) {
      r.str();
      const dims: number[] = [];
      for (let d = r.u32(); d > 0; d--) dims.push(r.u64());
      const type = r.u32();
      const offset = r.u64();
      parameters += dims.reduce((a, b) => a * b, 1);
      const bytes = tensorBytes(type, dims);
      if (bytes === undefined) known = false;
      else end = Math.max(end, offset + bytes);
    }
    const alignment = typeof kv.get("general.alignment") === "number" ? (kv.get("general.alignment") as number) : 32;
    const dataStart = Math.ceil(r.pos / alignment) * alignment;
    const num = (k: string) => (typeof kv.get(k) === "number" ? (kv.get(k) as number) : undefined);
    const splitCount = num("split.count") ?? 1;
    return {
      version,
      architecture,
      fileType: num("general.file_type"),
      contextLength: num(`${architecture}.context_length`),
      parameters,
      tensorCount,
      // A tensor type this table does not know cannot be measured: give it the benefit of the doubt.
      complete: !known || dataStart + end <= r.size,
      splitCount,
    };
  } catch (err) {
    if (err instanceof SlmError) throw err;
    throw notGguf(file, (err as Error).message);
  } finally {
    closeSync(fd);
  }
}
