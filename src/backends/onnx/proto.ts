import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { SlmError } from "../../core/errors.js";

/**
 * What an .onnx file says about itself without loading it: opsets, producer, the graph's inputs and
 * outputs with their element types and (symbolic) shapes, node and initializer counts, and the
 * external-data files its initializers point at.
 *
 * A minimal protobuf reader of our own, reading the file at positions: ModelProto puts the graph's
 * inputs and outputs *after* its initializers (fields 11/12 after 5), so a reader that decodes whole
 * messages (protobufjs with onnx.proto) would read and copy every weight (hundreds of MB, or the 2 GB
 * limit's worth) just to reach the names. Here the nodes and weight bytes are skipped by their
 * length prefixes; only small messages are read. Field numbers are onnx.proto's (IR version 10).
 */

export interface OnnxValueInfo {
  name: string;
  /** "float32", "int64", "float16"…; "unknown" for non-tensor types. */
  type: string;
  /** A number for a fixed size, the axis name for a dynamic one ("batch_size"), "?" when unnamed. */
  shape: (number | string)[];
}

export interface OnnxHeader {
  irVersion?: number;
  producer?: string;
  /** The operator sets imported: the default domain is "" (ai.onnx). */
  opsets: { domain: string; version: number }[];
  /** The default domain's opset version, what "opset" usually means. */
  opset?: number;
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
  nodes: number;
  initializers: number;
  /** Files named by initializers stored outside the .onnx file (external data), relative to it. */
  externalData: string[];
}

const ELEM_TYPES: Record<number, string> = {
  1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "string", 9: "bool",
  10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16", 17: "float8e4m3fn", 21: "uint4", 22: "int4",
};

class Truncated extends Error {}

/** Reads a file at positions through a small window, so skipped fields are never read. */
class PositionedFile {
  private window = Buffer.alloc(0);
  private windowAt = 0;
  constructor(private readonly fd: number, readonly size: number) {}

  bytes(pos: number, n: number): Buffer {
    if (pos + n > this.size) throw new Truncated(`ends at byte ${this.size}, a field needs ${pos + n}`);
    if (pos >= this.windowAt && pos + n <= this.windowAt + this.window.length) return this.window.subarray(pos - this.windowAt, pos - this.windowAt + n);
    const len = Math.min(Math.max(n, 64 * 1024), this.size - pos);
    const buf = Buffer.alloc(len);
    readSync(this.fd, buf, 0, len, pos);
    this.window = buf;
    this.windowAt = pos;
    return buf.subarray(0, n);
  }
}

/** A protobuf message in memory or in a file: field headers and varints at positions. */
interface Source {
  byte(pos: number): number;
  bytes(pos: number, n: number): Buffer;
}

function memory(buf: Buffer): Source {
  return {
    byte: (pos) => {
      if (pos >= buf.length) throw new Truncated("a message ends inside a field");
      return buf[pos]!;
    },
    bytes: (pos, n) => {
      if (pos + n > buf.length) throw new Truncated("a message ends inside a field");
      return buf.subarray(pos, pos + n);
    },
  };
}

function onFile(f: PositionedFile): Source {
  return { byte: (pos) => f.bytes(pos, 1)[0]!, bytes: (pos, n) => f.bytes(pos, n) };
}

/** A varint as a number (exact up to 2^53, which covers every length and count here). */
function varint(s: Source, pos: number): [number, number] {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    const b = s.byte(pos + i);
    value += (b & 0x7f) * scale;
    if ((b & 0x80) === 0) return [value, pos + i + 1];
    scale *= 128;
  }
  throw new Error("a varint longer than 10 bytes");
}

interface Field {
  number: number;
  wire: number;
  /** varint value, or the length of a length-delimited field. */
  value: number;
  /** Where a length-delimited field's bytes start. */
  start: number;
  next: number;
}

/** The fields of the message between `from` and `to`, one at a time; groups (wire 3/4) are not used by onnx.proto. */
function* fields(s: Source, from: number, to: number): Generator<Field> {
  let pos = from;
  while (pos < to) {
    const [key, afterKey] = varint(s, pos);
    const number = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 0) {
      const [v, next] = varint(s, afterKey);
      yield { number, wire, value: v, start: afterKey, next };
      pos = next;
    } else if (wire === 2) {
      const [len, start] = varint(s, afterKey);
      yield { number, wire, value: len, start, next: start + len };
      pos = start + len;
    } else if (wire === 1 || wire === 5) {
      const width = wire === 1 ? 8 : 4;
      yield { number, wire, value: 0, start: afterKey, next: afterKey + width };
      pos = afterKey + width;
    } else throw new Error(`wire type ${wire} at byte ${pos}`);
    if (pos > to) throw new Truncated(`a field runs past its message's end (byte ${to})`);
  }
}

const text = (s: Source, f: Field) => s.bytes(f.start, f.value).toString("utf8");

function valueInfo(buf: Buffer): OnnxValueInfo {
  const s = memory(buf);
  const out: OnnxValueInfo = { name: "", type: "unknown", shape: [] };
  for (const f of fields(s, 0, buf.length)) {
    if (f.number === 1 && f.wire === 2) out.name = text(s, f);
    if (f.number !== 2 || f.wire !== 2) continue;
    // TypeProto.tensor_type (1): elem_type (1), shape (2) of dims (1): dim_value (1) or dim_param (2).
    for (const t of fields(s, f.start, f.next)) {
      if (t.number !== 1 || t.wire !== 2) continue;
      for (const tt of fields(s, t.start, t.next)) {
        if (tt.number === 1 && tt.wire === 0) out.type = ELEM_TYPES[tt.value] ?? `type ${tt.value}`;
        if (tt.number !== 2 || tt.wire !== 2) continue;
        for (const dim of fields(s, tt.start, tt.next)) {
          if (dim.number !== 1 || dim.wire !== 2) continue;
          let d: number | string = "?";
          for (const dv of fields(s, dim.start, dim.next)) {
            if (dv.number === 1 && dv.wire === 0) d = dv.value;
            if (dv.number === 2 && dv.wire === 2) d = text(s, dv);
          }
          out.shape.push(d);
        }
      }
    }
  }
  return out;
}

/** An initializer's name (8) and external-data location (external_data 13 {key 1, value 2}, data_location 14), its weight bytes skipped. */
function initializerOf(s: Source, from: number, to: number): { name: string; location?: string } {
  let location: string | undefined;
  let external = false;
  let name = "";
  for (const f of fields(s, from, to)) {
    if (f.number === 8 && f.wire === 2) name = text(s, f);
    if (f.number === 14 && f.wire === 0) external = f.value === 1;
    if (f.number !== 13 || f.wire !== 2) continue;
    let key = "";
    let value = "";
    for (const kv of fields(s, f.start, f.next)) {
      if (kv.number === 1 && kv.wire === 2) key = text(s, kv);
      if (kv.number === 2 && kv.wire === 2) value = text(s, kv);
    }
    if (key === "location") location = value;
  }
  return { name, ...(external && location ? { location } : {}) };
}

/** Reads an .onnx file's header; a file that is not one (or is cut short) is an error naming the file and why. */
export function readOnnxHeader(file: string): OnnxHeader {
  const fd = openSync(file, "r");
  try {
    const f = new PositionedFile(fd, fstatSync(fd).size);
    const s = onFile(f);
    const out: OnnxHeader = { opsets: [], inputs: [], outputs: [], nodes: 0, initializers: 0, externalData: [] };
    let graphSeen = false;
    const external = new Set<string>();
    const weights = new Set<string>();
    for (const m of fields(s, 0, f.size)) {
      if (m.number === 1 && m.wire === 0) out.irVersion = m.value;
      else if (m.number === 2 && m.wire === 2) out.producer = [text(s, m), out.producer].filter(Boolean).join(" ");
      else if (m.number === 3 && m.wire === 2) out.producer = [out.producer, text(s, m)].filter(Boolean).join(" ");
      else if (m.number === 8 && m.wire === 2) {
        const buf = memory(s.bytes(m.start, m.value));
        const op = { domain: "", version: 0 };
        for (const o of fields(buf, 0, m.value)) {
          if (o.number === 1 && o.wire === 2) op.domain = text(buf, o);
          if (o.number === 2 && o.wire === 0) op.version = o.value;
        }
        out.opsets.push(op);
      } else if (m.number === 7 && m.wire === 2) {
        graphSeen = true;
        for (const g of fields(s, m.start, m.next)) {
          if (g.wire !== 2) continue;
          if (g.number === 1) out.nodes++;
          else if (g.number === 5) {
            out.initializers++;
            const init = initializerOf(s, g.start, g.next);
            weights.add(init.name);
            if (init.location) external.add(init.location);
          } else if (g.number === 11) out.inputs.push(valueInfo(Buffer.from(s.bytes(g.start, g.value))));
          else if (g.number === 12) out.outputs.push(valueInfo(Buffer.from(s.bytes(g.start, g.value))));
        }
      }
    }
    if (!graphSeen || out.opsets.length === 0) throw new Error(graphSeen ? "no opset_import" : "no graph");
    out.opset = out.opsets.find((o) => o.domain === "" || o.domain === "ai.onnx")?.version;
    // Initializers that are also listed as graph inputs (IR < 4 exports) are weights, not inputs a caller feeds.
    out.inputs = out.inputs.filter((i) => !weights.has(i.name));
    out.externalData = [...external].sort();
    return out;
  } catch (err) {
    const why = err instanceof Truncated ? `truncated: it ${err.message}` : (err as Error).message;
    throw new SlmError(`${file} is not a readable ONNX file (${why}).`, { hint: "It may be truncated or not an ONNX model; pull, copy or export it again.", cause: err });
  } finally {
    closeSync(fd);
  }
}
