import { describe, expect, it } from "vitest";
import type { ModelInfo } from "../../src/backends/store/info.js";
import type { OnnxValueInfo } from "../../src/backends/onnx/proto.js";
import { modelInfoText, wrapLine } from "../../src/ui/infoText.js";

const kv = (prefix: string, past: string): OnnxValueInfo[] =>
  [0, 1, 2, 3].flatMap((i) => ["key", "value"].map((p) => ({ name: `${prefix}.${i}.${p}`, type: "float32", shape: ["batch_size", "4", past, "32"] })));

/** An ONNX model as `slm info` describes it (tiny-arith's export shape), without tokenizer.json. */
const info = {
  model: { name: "tiny-arith-onnx", format: "onnx", path: "/m/tiny-arith-onnx", files: [], source: { type: "derived" }, size: 13_400_000, lineage: [], createdAt: "2026-01-01T00:00:00Z" },
  hf: { architecture: "LlamaForCausalLM", modelType: "llama", weights: "none", tokenizer: "SentencePiece (tokenizer.model)", hasChatTemplate: true, contextLength: 256 },
  onnx: {
    base: "model",
    defaultDtype: "q4",
    variants: [
      { dtype: "fp32", file: "onnx/model.onnx", size: 13_400_000, externalData: [], opset: 17, extraOpsets: [] },
      { dtype: "q4", file: "onnx/model_q4.onnx", size: 4_100_000, externalData: [{ file: "onnx/model_q4.onnx_data", size: 3_900_000 }], opset: 17, extraOpsets: [{ domain: "com.microsoft", version: 1 }] },
    ],
    inputs: [{ name: "input_ids", type: "int64", shape: ["batch_size", "sequence_length"] }, ...kv("past_key_values", "past_sequence_length")],
    outputs: [{ name: "logits", type: "float32", shape: ["batch_size", "sequence_length", "320"] }, ...kv("present", "total_sequence_length")],
  },
} as unknown as ModelInfo;

describe("slm info of an ONNX model", () => {
  const text = modelInfoText(info);

  it("fits 80 columns: long values wrap under their column, a shape on its own line", () => {
    for (const line of text.split("\n")) expect(line.length, line).toBeLessThanOrEqual(80);
    expect(text).toContain("\nformat          onnx (Optimum / transformers.js layout, onnx/model*.onnx)\n");
    expect(text).toContain("\nloads           q4 (another with NAME:dtype or --dtype)\n");
    expect(text).toContain("                past_key_values.{0..3}.{key,value} float32\n                  [batch_size, 4, past_sequence_length, 32]\n");
  });

  it("says when tokenizer.json is missing (the ONNX runtime reads nothing else)", () => {
    expect(text.replace(/\n {18}/g, " ")).toContain("\ntokenizer       missing: no tokenizer.json, which the ONNX runtime needs (has only SentencePiece (tokenizer.model))\n");
  });

  it("wrapLine keeps a word longer than the room whole", () => {
    expect(wrapLine("export-onnx of /a/very/long/path/that/does/not/fit", 20)).toEqual(["export-onnx of", "  /a/very/long/path/that/does/not/fit"]);
    expect(wrapLine("short", 20)).toEqual(["short"]);
    // A break at a column gap leaves no trailing or leading spaces.
    expect(wrapLine("q4  4.10 MB  opset 17  (default)", 24)).toEqual(["q4  4.10 MB  opset 17", "  (default)"]);
  });
});
