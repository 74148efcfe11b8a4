/**
 * A GGUF (v3) writer: metadata in the order given, tensor infos, then each tensor's data padded to the
 * alignment (32 unless `general.alignment` says otherwise), laid out as gguf-py's GGUFWriter lays it out (llama.cpp's reference), so a file written
 * here can be compared byte for byte with one written by llama.cpp's converters. The file appears
 * under its name only when complete (temp file + rename).
 */
import { closeSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import path from "node:path";
import { tensorBytes } from "./ggmlTypes.js";

/** gguf.h's default; a `general.alignment` entry in the metadata overrides it, as readers expect. */
const DEFAULT_ALIGNMENT = 32;

/** GGUF metadata value type ids (gguf.h). */
const KV = { u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12 } as const;
export type GgufScalarType = Exclude<keyof typeof KV, "array">;

export type GgufMetaValue =
  | { type: Exclude<GgufScalarType, "bool" | "string">; value: number | bigint }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | { type: "array"; itemType: GgufScalarType; values: readonly (number | bigint | boolean | string)[] };

export interface GgufTensorOut {
  name: string;
  /** ggml order: dims[0] is the row length (numpy's shape reversed). */
  dims: readonly number[];
  /** ggml type id (ggmlTypes.ts). */
  type: number;
  /**
   * The encoded data, in one or more pieces (a generator lets a large tensor be produced piece by
   * piece). Called once, while the file is written; the pieces must add up to the type's size.
   */
  data: () => Iterable<Buffer>;
}

export interface GgufWriteOptions {
  signal?: AbortSignal;
}

/** Little-endian header bytes, collected in pieces and joined once. */
class HeaderBuf {
  private parts: Buffer[] = [];
  private num(bytes: number, put: (b: Buffer) => void): void {
    const b = Buffer.alloc(bytes);
    put(b);
    this.parts.push(b);
  }
  u32(n: number): void {
    this.num(4, (b) => b.writeUInt32LE(n));
  }
  u64(n: number | bigint): void {
    this.num(8, (b) => b.writeBigUInt64LE(BigInt(n)));
  }
  str(s: string): void {
    const b = Buffer.from(s, "utf8");
    this.u64(b.length);
    this.parts.push(b);
  }
  scalar(type: GgufScalarType, v: number | bigint | boolean | string): void {
    switch (type) {
      case "string": return this.str(String(v));
      case "bool": return this.num(1, (b) => b.writeUInt8(v ? 1 : 0));
      case "u8": return this.num(1, (b) => b.writeUInt8(Number(v)));
      case "i8": return this.num(1, (b) => b.writeInt8(Number(v)));
      case "u16": return this.num(2, (b) => b.writeUInt16LE(Number(v)));
      case "i16": return this.num(2, (b) => b.writeInt16LE(Number(v)));
      case "u32": return this.num(4, (b) => b.writeUInt32LE(Number(v)));
      case "i32": return this.num(4, (b) => b.writeInt32LE(Number(v)));
      case "f32": return this.num(4, (b) => b.writeFloatLE(Number(v)));
      case "u64": return this.num(8, (b) => b.writeBigUInt64LE(BigInt(v as number | bigint)));
      case "i64": return this.num(8, (b) => b.writeBigInt64LE(BigInt(v as number | bigint)));
      case "f64": return this.num(8, (b) => b.writeDoubleLE(Number(v)));
    }
  }
  value(v: GgufMetaValue): void {
    this.u32(KV[v.type]);
    if (v.type !== "array") return this.scalar(v.type, v.value);
    this.u32(KV[v.itemType]);
    this.u64(v.values.length);
    for (const x of v.values) this.scalar(v.itemType, x);
  }
  concat(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function sizeOf(t: GgufTensorOut): number {
  const n = tensorBytes(t.type, t.dims);
  if (n === undefined) throw new RangeError(`${t.name}: ggml type ${t.type} has no known size`);
  return n;
}

/** Writes a GGUF file atomically; returns its size in bytes. */
export function writeGguf(file: string, metadata: readonly (readonly [string, GgufMetaValue])[], tensors: readonly GgufTensorOut[], o: GgufWriteOptions = {}): number {
  const align = metadata.find(([k]) => k === "general.alignment")?.[1];
  const alignment = align && align.type !== "array" && typeof align.value === "number" && align.value > 0 ? align.value : DEFAULT_ALIGNMENT;
  const pad = (n: number) => (alignment - (n % alignment)) % alignment;
  const head = new HeaderBuf();
  head.u32(0x46554747); // "GGUF"
  head.u32(3);
  head.u64(tensors.length);
  head.u64(metadata.length);
  for (const [key, value] of metadata) {
    head.str(key);
    head.value(value);
  }
  let offset = 0;
  for (const t of tensors) {
    head.str(t.name);
    head.u32(t.dims.length);
    for (const d of t.dims) head.u64(d);
    head.u32(t.type);
    head.u64(offset);
    const n = sizeOf(t);
    offset += n + pad(n);
  }
  const header = head.concat();

  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  const fd = openSync(tmp, "w");
  let bytes = 0;
  const put = (b: Buffer) => {
    for (let done = 0; done < b.length; ) done += writeSync(fd, b, done);
    bytes += b.length;
  };
  try {
    put(header);
    put(Buffer.alloc(pad(header.length)));
    for (const t of tensors) {
      o.signal?.throwIfAborted();
      const want = sizeOf(t);
      let got = 0;
      for (const piece of t.data()) {
        got += piece.length;
        put(piece);
      }
      if (got !== want) throw new RangeError(`${t.name}: wrote ${got} bytes of data, its type and shape need ${want}`);
      put(Buffer.alloc(pad(want)));
    }
    closeSync(fd);
    renameSync(tmp, file);
    return bytes;
  } catch (err) {
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
    rmSync(tmp, { force: true });
    throw err;
  }
}
