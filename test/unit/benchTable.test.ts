import { describe, expect, it } from "vitest";
import { type BenchResult, benchTable } from "../../src/backends/llama/bench.js";

/** llama-bench's markdown table, with values wider than llama-bench's fixed column widths. */
function result(description: string): BenchResult {
  const test = (name: string, kind: "pp" | "tg", mean: number) => ({ name, kind, tokens: 16, repetitions: 1, samples: [mean], samplesMs: [1], mean, stddev: 0 });
  return {
    model: { name: "m", path: "/m", description, sizeBytes: 3.44 * 2 ** 20, parameters: 3.31e6 },
    backend: "CPU",
    settings: { threads: 2, contextSize: 17, batchSize: 16, adapters: [] },
    tests: [test("pp16", "pp", 1054.42), test("tg8", "tg", 36.51)],
    loadMs: 1,
  };
}

describe("benchTable", () => {
  it("widens a column to its widest value, header and rule included, so every line lines up", () => {
    // An ONNX model's description (35 characters) is wider than llama-bench's 30-character model column.
    const lines = benchTable(result("onnx q8 (onnx/model_quantized.onnx)")).split("\n");
    expect(lines).toHaveLength(4);
    const bars = (l: string) => [...l].flatMap((c, i) => (c === "|" ? [i] : []));
    for (const l of lines) expect(bars(l)).toEqual(bars(lines[0]!));
    expect(lines[2]).toMatch(/^\| onnx q8 \(onnx\/model_quantized\.onnx\) \| +3\.44 MiB \|/);
  });

  it("keeps llama-bench's widths when everything fits", () => {
    const [header] = benchTable(result("llama ?B F16")).split("\n");
    expect(header).toBe("| model                          |       size |     params | backend    | threads |            test |                  t/s |");
  });
});
