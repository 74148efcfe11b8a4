import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { GGML_TYPE, encodeTensor, f32BitsToBf16Bits, f32BitsToF16Bits, f32ToF16Bits } from "../../src/backends/gguf/quants.js";
import { readGgufHeader } from "../../src/backends/gguf/reader.js";
import { writeGguf } from "../../src/backends/gguf/writer.js";

const bits = (x: number) => new Uint32Array(Float32Array.of(x).buffer)[0]!;

describe("float encodings (what numpy and ggml produce)", () => {
  it("f32 → f16 rounds to nearest even, through subnormals, and overflows to infinity", () => {
    const cases: [number, number][] = [
      [1, 0x3c00],
      [-2, 0xc000],
      [65504, 0x7bff], // largest half
      [65519.99, 0x7bff],
      [65520, 0x7c00], // halfway to 2^16 rounds up (to even), which is infinity
      [1e6, 0x7c00],
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // halfway between 0 and 2^-24: to even, 0
      [1.5 * 2 ** -25, 0x0001],
      [3 * 2 ** -25, 0x0002], // 1.5 subnormal steps: to even, 2
      [1 + 2 ** -11, 0x3c00], // halfway between 1 and its next half: to even, 1
      [1 + 3 * 2 ** -11, 0x3c02],
      [-0, 0x8000],
      [Infinity, 0x7c00],
    ];
    for (const [x, h] of cases) expect(f32ToF16Bits(x).toString(16), String(x)).toBe(h.toString(16));
    // A signalling NaN keeps its payload's top bits (numpy does, a JS number would not).
    expect(f32BitsToF16Bits(0x7f815466)).toBe(0x7c0a);
    expect(f32BitsToF16Bits(0x7f800001)).toBe(0x7c01);
  });

  it("f32 → bf16 rounds to nearest even and quiets NaN, as ggml_compute_fp32_to_bf16", () => {
    expect(f32BitsToBf16Bits(bits(1))).toBe(0x3f80);
    expect(f32BitsToBf16Bits(bits(1 + 2 ** -8))).toBe(0x3f80); // tie → even
    expect(f32BitsToBf16Bits(bits(1 + 3 * 2 ** -8))).toBe(0x3f82); // tie → even (up)
    expect(f32BitsToBf16Bits(bits(-1 - 2 ** -7 - 2 ** -9))).toBe(0xbf81);
    expect(f32BitsToBf16Bits(0x7f800001)).toBe(0x7fc0);
  });

  it("Q8_0 stores an f16 scale max|x|/127 and round-half-away int8 values per 32", () => {
    const v = Float32Array.from({ length: 32 }, (_, i) => (i - 16) / 16); // -1 … 0.9375
    const b = encodeTensor(v, GGML_TYPE.Q8_0, [32]);
    expect(b.length).toBe(34);
    expect(b.readUInt16LE(0)).toBe(f32ToF16Bits(Math.fround(1 / 127)));
    expect(b.readInt8(2)).toBe(-127);
    expect(b.readInt8(2 + 24)).toBe(64); // 0.5·127 = 63.5 → 64 (away from zero)
    expect(b.readInt8(2 + 8)).toBe(-64); // -63.5 → -64
    expect(b.readInt8(2 + 16)).toBe(0);
    expect(encodeTensor(new Float32Array(32), GGML_TYPE.Q8_0, [32]).equals(Buffer.alloc(34))).toBe(true);
  });
});

describe("GGUF writer", () => {
  it("writes metadata of every kind and aligned tensors that the reader reads back", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "slm-gguf-w-"));
    const file = path.join(dir, "t.gguf");
    const a = Float32Array.of(1, 2, 3);
    const size = writeGguf(
      file,
      [
        ["general.architecture", { type: "string", value: "llama" }],
        ["x.u32", { type: "u32", value: 7 }],
        ["x.f32", { type: "f32", value: 0.5 }],
        ["x.bool", { type: "bool", value: true }],
        ["x.i64", { type: "i64", value: -5n }],
        ["x.tokens", { type: "array", itemType: "u32", values: [3, 4, 5] }],
        ["x.names", { type: "array", itemType: "string", values: ["a", "bc"] }],
      ],
      [
        { name: "a", dims: [3], type: GGML_TYPE.F32, data: () => [encodeTensor(a, GGML_TYPE.F32, [3])] },
        { name: "b", dims: [2, 2], type: GGML_TYPE.F16, data: () => [Buffer.alloc(4, 1), Buffer.alloc(4, 2)] },
      ],
    );
    const h = readGgufHeader(file);
    expect(h.fileSize).toBe(size);
    expect(Object.fromEntries(h.metadata)).toEqual({
      "general.architecture": "llama",
      "x.u32": 7,
      "x.f32": 0.5,
      "x.bool": true,
      "x.i64": -5,
      "x.tokens": { itemType: 4, length: 3, values: [3, 4, 5] },
      "x.names": { itemType: 8, length: 2, values: ["a", "bc"] },
    });
    expect(h.dataOffset % 32).toBe(0);
    expect(h.tensors.map((t) => [t.name, t.dims, t.type, t.offset])).toEqual([["a", [3], 0, 0], ["b", [2, 2], 1, 32]]);
    const bytes = readFileSync(file);
    expect(new Float32Array(bytes.buffer.slice(bytes.byteOffset + h.dataOffset, bytes.byteOffset + h.dataOffset + 12))).toEqual(a);
    expect(bytes.subarray(h.dataOffset + 32, h.dataOffset + 40)).toEqual(Buffer.from([1, 1, 1, 1, 2, 2, 2, 2]));
    expect(size % 32).toBe(0);
  });

  it("leaves no file (and no temp file) when a tensor's data does not fit its shape", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "slm-gguf-w-"));
    expect(() => writeGguf(path.join(dir, "t.gguf"), [], [{ name: "a", dims: [4], type: GGML_TYPE.F32, data: () => [Buffer.alloc(8)] }])).toThrow(/need 16/);
    expect(readdirSync(dir)).toEqual([]);
  });
});
