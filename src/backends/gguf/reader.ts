import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { SlmError } from "../../core/errors.js";

/**
 * A GGUF header reader of our own (the format is small and fixed: llama.cpp's gguf.h). node-llama-cpp
 * has one, but reaching it means importing the package root, ~0.5 s on a 2-core machine, and it reads
 * past the end of a short file without complaint (docs/benchmarks.md, pull, finding 1).
 */
export type GgufScalar = number | bigint | boolean | string;

export interface GgufArray {
  itemType: number;
  length: number;
  /** Kept for arrays up to the reader's `arrayLimit`; long ones (token lists) keep only their length. */
  values?: GgufScalar[];
}

export type GgufValue = GgufScalar | GgufArray;

export interface GgufTensorInfo {
  name: string;
  dims: number[];
  /** ggml type id. */
  type: number;
  /** Offset from the start of the data section. */
  offset: number;
}

export interface GgufHeader {
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  alignment: number;
  /** File offset where tensor data starts. */
  dataOffset: number;
  fileSize: number;
}

const T = { U8: 0, I8: 1, U16: 2, I16: 3, U32: 4, I32: 5, F32: 6, BOOL: 7, STRING: 8, ARRAY: 9, U64: 10, I64: 11, F64: 12 } as const;
const FIXED: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

export function notGguf(file: string, why: string): SlmError {
  return new SlmError(`${file} is not a readable GGUF file (${why}).`, { hint: "It may be truncated or not a GGUF model; pull or copy it again, or check the path." });
}

/** Reads front to back through a window that is refilled from the file as the header goes on. */
class Cursor {
  private buf = Buffer.alloc(0);
  private base = 0;
  pos = 0;
  constructor(
    private readonly fd: number,
    readonly size: number,
    private readonly file: string,
  ) {}

  private need(n: number): number {
    if (this.pos + n > this.size) throw notGguf(this.file, "the header runs past the end of the file");
    if (this.pos + n > this.base + this.buf.length) {
      const len = Math.max(n, 1 << 20);
      const next = Buffer.allocUnsafe(len);
      const got = readSync(this.fd, next, 0, len, this.pos);
      this.buf = next.subarray(0, got);
      this.base = this.pos;
    }
    const at = this.pos - this.base;
    this.pos += n;
    return at;
  }

  /** need() may swap the window, so the offset is taken before the buffer is read. */
  private read<V>(n: number, get: (b: Buffer, at: number) => V): V {
    const at = this.need(n);
    return get(this.buf, at);
  }

  u32(): number {
    return this.read(4, (b, at) => b.readUInt32LE(at));
  }

  u64(): number {
    const v = this.read(8, (b, at) => b.readBigUInt64LE(at));
    if (v > BigInt(this.size) * 8n + 1024n) throw notGguf(this.file, "a count or length is larger than the file");
    return Number(v);
  }

  string(): string {
    const len = this.u64();
    return this.read(len, (b, at) => b.toString("utf8", at, at + len));
  }

  scalar(type: number): GgufScalar {
    switch (type) {
      case T.STRING:
        return this.string();
      case T.U8: return this.read(1, (b, at) => b.readUInt8(at));
      case T.I8: return this.read(1, (b, at) => b.readInt8(at));
      case T.U16: return this.read(2, (b, at) => b.readUInt16LE(at));
      case T.I16: return this.read(2, (b, at) => b.readInt16LE(at));
      case T.U32: return this.read(4, (b, at) => b.readUInt32LE(at));
      case T.I32: return this.read(4, (b, at) => b.readInt32LE(at));
      case T.F32: return this.read(4, (b, at) => b.readFloatLE(at));
      case T.BOOL: return this.read(1, (b, at) => b.readUInt8(at)) !== 0;
      case T.U64: {
        const v = this.read(8, (b, at) => b.readBigUInt64LE(at));
        return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
      }
      case T.I64: {
        const v = this.read(8, (b, at) => b.readBigInt64LE(at));
        return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
      }
      case T.F64: return this.read(8, (b, at) => b.readDoubleLE(at));
      default:
        throw notGguf(this.file, `unknown metadata value type ${type}`);
    }
  }

  value(type: number, arrayLimit: number): GgufValue {
    if (type !== T.ARRAY) return this.scalar(type);
    const itemType = this.u32();
    const length = this.u64();
    if (itemType === T.ARRAY) throw notGguf(this.file, "nested arrays are not supported");
    if (length <= arrayLimit) return { itemType, length, values: Array.from({ length }, () => this.scalar(itemType)) };
    const fixed = FIXED[itemType];
    if (fixed !== undefined) this.pos += fixed * length;
    else for (let i = 0; i < length; i++) this.pos += 8 + this.peekLength();
    if (this.pos > this.size) throw notGguf(this.file, "the header runs past the end of the file");
    return { itemType, length };
  }

  /** The length prefix of the string at pos, without moving past it. */
  private peekLength(): number {
    const len = this.read(8, (b, at) => b.readBigUInt64LE(at));
    this.pos -= 8;
    return Number(len);
  }
}

export function readGgufHeader(file: string, opts: { arrayLimit?: number } = {}): GgufHeader {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch (err) {
    throw notGguf(file, (err as Error).message);
  }
  try {
    const size = fstatSync(fd).size;
    const c = new Cursor(fd, size, file);
    if (size < 24 || c.u32() !== 0x46554747) throw notGguf(file, 'it does not start with "GGUF"');
    const version = c.u32();
    if (version < 2 || version > 3) throw notGguf(file, `GGUF version ${version} is not supported`);
    const tensorCount = c.u64();
    const kvCount = c.u64();
    const metadata = new Map<string, GgufValue>();
    for (let i = 0; i < kvCount; i++) {
      const key = c.string();
      metadata.set(key, c.value(c.u32(), opts.arrayLimit ?? 64));
    }
    const tensors: GgufTensorInfo[] = [];
    for (let i = 0; i < tensorCount; i++) {
      const name = c.string();
      const nDims = c.u32();
      if (nDims > 8) throw notGguf(file, `tensor ${name} has ${nDims} dimensions`);
      const dims = Array.from({ length: nDims }, () => c.u64());
      tensors.push({ name, dims, type: c.u32(), offset: c.u64() });
    }
    const align = metadata.get("general.alignment");
    const alignment = typeof align === "number" && align > 0 ? align : 32;
    const dataOffset = Math.ceil(c.pos / alignment) * alignment;
    return { version, metadata, tensors, alignment, dataOffset, fileSize: size };
  } finally {
    closeSync(fd);
  }
}
