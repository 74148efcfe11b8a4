/**
 * A reader for local .safetensors files: an 8-byte little-endian header length, a JSON header
 * (name → dtype, shape, data_offsets), then the tensors' bytes. Written here rather than taken from npm:
 * @huggingface/hub parses headers only over HTTP from the Hub, and the npm packages that read local
 * files are unmaintained; the format is small and fixed (github.com/huggingface/safetensors).
 *
 * The header is checked as strictly as the Rust library checks it (sizes match shapes and dtypes,
 * offsets are in bounds, contiguous and cover the data exactly), so a truncated or damaged file is an
 * IntegrityError here, never garbage weights later.
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { IntegrityError } from "../../core/errors.js";
import { bf16BitsToF32, f16BitsToF32 } from "../gguf/quants.js";

const DTYPE_BYTES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, U64: 8, I32: 4, U32: 4, I16: 2, U16: 2, I8: 1, U8: 1, BOOL: 1,
  F8_E4M3: 1, F8_E5M2: 1,
};

export interface SafetensorsTensor {
  name: string;
  dtype: string;
  shape: number[];
  /** Byte range in the file (absolute). */
  start: number;
  end: number;
}

export interface SafetensorsFile {
  path: string;
  size: number;
  /** Tensors in the order of their data in the file. */
  tensors: SafetensorsTensor[];
  /** The optional `__metadata__` string map. */
  metadata: Record<string, string>;
}

/** Headers above this are refused, as the Rust library does (100 MB). */
const MAX_HEADER = 100_000_000;

function corrupt(file: string, why: string): IntegrityError {
  return new IntegrityError(`${file} is not a valid safetensors file: ${why}.`, { hint: "It may be truncated or damaged; download or copy it again." });
}

function readAt(fd: number, start: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const n = readSync(fd, buf, got, length - got, start + got);
    if (n === 0) break;
    got += n;
  }
  return buf.subarray(0, got);
}

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

function parseEntry(file: string, name: string, raw: unknown, dataStart: number): SafetensorsTensor {
  const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
  if (typeof e !== "object" || e === null) throw corrupt(file, `the entry of ${name} is not an object`);
  const { dtype, shape, data_offsets: offsets } = e;
  if (typeof dtype !== "string" || !(dtype in DTYPE_BYTES)) throw corrupt(file, `${name} has an unknown dtype ${JSON.stringify(dtype)}`);
  if (!Array.isArray(shape) || !shape.every(isCount)) throw corrupt(file, `${name} has an invalid shape`);
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0] > offsets[1]) {
    throw corrupt(file, `${name} has invalid data_offsets`);
  }
  const [begin, end] = offsets as [number, number];
  const elements = (shape as number[]).reduce((a, b) => a * b, 1);
  if (end - begin !== elements * DTYPE_BYTES[dtype]!) throw corrupt(file, `${name} holds ${end - begin} bytes, its ${dtype} shape [${shape.join(", ")}] needs ${elements * DTYPE_BYTES[dtype]!}`);
  return { name, dtype, shape: shape as number[], start: dataStart + begin, end: dataStart + end };
}

/** Reads and validates the header of a .safetensors file. */
export function readSafetensors(file: string): SafetensorsFile {
  const fd = openSync(file, "r");
  try {
    const size = fstatSync(fd).size;
    if (size < 8) throw corrupt(file, `it is only ${size} bytes long`);
    const n = Number(readAt(fd, 0, 8).readBigUInt64LE(0));
    if (n > MAX_HEADER) throw corrupt(file, `its header length ${n} is implausible`);
    if (8 + n > size) throw corrupt(file, `the header (${n} bytes) runs past the end of the file (${size} bytes): it is truncated`);
    let header: unknown;
    try {
      header = JSON.parse(readAt(fd, 8, n).toString("utf8"));
    } catch (err) {
      throw corrupt(file, `its header is not JSON (${(err as Error).message})`);
    }
    if (typeof header !== "object" || header === null || Array.isArray(header)) throw corrupt(file, "its header is not a JSON object");
    const dataStart = 8 + n;
    const tensors: SafetensorsTensor[] = [];
    let metadata: Record<string, string> = {};
    for (const [name, raw] of Object.entries(header)) {
      if (name === "__metadata__") metadata = (raw ?? {}) as Record<string, string>;
      else tensors.push(parseEntry(file, name, raw, dataStart));
    }
    tensors.sort((a, b) => a.start - b.start || a.end - b.end);
    let at = dataStart;
    for (const t of tensors) {
      if (t.start !== at) throw corrupt(file, `tensor ${t.name} starts at byte ${t.start - dataStart} of the data, expected ${at - dataStart} (overlapping or missing bytes)`);
      at = t.end;
    }
    if (at > size) throw corrupt(file, `its tensors need ${at} bytes, the file has ${size}: it is truncated`);
    if (at < size) throw corrupt(file, `it has ${size - at} bytes after its last tensor`);
    return { path: file, size, tensors, metadata };
  } finally {
    closeSync(fd);
  }
}

/** A tensor's values as float32 (exact for F32, F16 and BF16). */
export function readTensorF32(file: SafetensorsFile, t: SafetensorsTensor): Float32Array {
  const fd = openSync(file.path, "r");
  let raw: Buffer;
  try {
    raw = readAt(fd, t.start, t.end - t.start);
  } finally {
    closeSync(fd);
  }
  if (raw.length !== t.end - t.start) throw corrupt(file.path, `tensor ${t.name} could not be read in full (the file changed?)`);
  const count = raw.length / (DTYPE_BYTES[t.dtype] ?? 1);
  const out = new Float32Array(count);
  switch (t.dtype) {
    case "F32":
      // Copied into a fresh, aligned buffer: Float32Array cannot view an odd byte offset.
      new Uint8Array(out.buffer).set(raw);
      return out;
    case "F16":
      for (let i = 0; i < count; i++) out[i] = f16BitsToF32(raw.readUInt16LE(i * 2));
      return out;
    case "BF16":
      for (let i = 0; i < count; i++) out[i] = bf16BitsToF32(raw.readUInt16LE(i * 2));
      return out;
    default:
      throw new RangeError(`${t.name}: reading ${t.dtype} tensors as float32 is not supported`);
  }
}
