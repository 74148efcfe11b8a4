import path from "node:path";
import { readGgufFileInfo } from "node-llama-cpp";
import { describe, expect, it } from "vitest";
import { readGgufHeader } from "../../src/backends/gguf/reader.js";
import { readGgufSummary } from "../../src/backends/gguf/summary.js";
import { FIXTURE, ROOT } from "../helpers/cli.js";

const FILES = [path.join(ROOT, "models", "tiny-arith-f16.gguf"), path.join(FIXTURE, "gguf", "tiny-arith-f32.gguf"), path.join(FIXTURE, "gguf", "lora-sub-f32.gguf")];

/** node-llama-cpp's reader nests keys ("general.name" → general.name); flatten it to compare. */
function flatten(o: Record<string, unknown>, prefix = "", out = new Map<string, unknown>()): Map<string, unknown> {
  for (const [k, v] of Object.entries(o)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === "object" && !Array.isArray(v)) flatten(v as Record<string, unknown>, key, out);
    else out.set(key, v);
  }
  return out;
}

describe("our GGUF header reader agrees with node-llama-cpp's", () => {
  it.each(FILES)("%s", async (file) => {
    const ours = readGgufHeader(file, { arrayLimit: 1_000_000 });
    const theirs = await readGgufFileInfo(file, { readTensorInfo: true, logWarnings: false });
    const ref = flatten(theirs.metadata as unknown as Record<string, unknown>);
    expect(ours.metadata.size).toBe(ref.size);
    for (const [key, value] of ours.metadata) {
      const expected = ref.get(key);
      if (typeof value === "object") expect(value.values, key).toEqual(expected);
      else if (typeof value === "number" && !Number.isInteger(value)) expect(value, key).toBeCloseTo(expected as number, 6);
      else expect(value, key).toEqual(expected);
    }
    expect(ours.tensors.map((t) => [t.name, t.dims, t.type, ours.dataOffset + t.offset])).toEqual(
      theirs.tensorInfo!.map((t) => [t.name, t.dimensions.map(Number), t.ggmlType, Number(t.fileOffset)]),
    );
  });

  it("summarises the built-in model and the adapter", async () => {
    expect(await readGgufSummary(FILES[0]!)).toMatchObject({ architecture: "llama", type: "model", parameters: 3311872, contextLength: 256, fileType: "F16", vocabSize: 320, hasChatTemplate: true, splitCount: 1 });
    expect(await readGgufSummary(FILES[2]!)).toMatchObject({ architecture: "llama", type: "adapter", hasChatTemplate: false });
  });
});
