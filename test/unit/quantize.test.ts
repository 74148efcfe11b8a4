import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { looksLikeJsonl, parseExample, prepareCalibration } from "../../src/backends/quantize/calibration.js";
import { writeLlamaGguf } from "../../bench/ggufWriter.js";
import { readGgufSummary } from "../../src/backends/gguf/summary.js";
import { derivedName, parseImatrixProgress, parseSizeLine, parseTensorProgress } from "../../src/backends/quantize/quantize.js";
import { BITS_TO_TYPE, bitClass, canonicalTensorType, canonicalType, isUnquantized, parseQuantTypes, requiresImatrix, suggest } from "../../src/backends/quantize/types.js";
import type { ModelEntry } from "../../src/backends/store/types.js";
import { UsageError } from "../../src/core/errors.js";
import { FIXTURE } from "../helpers/cli.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "slm-quant-unit-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// The tail of `llama-quantize --help` from the bundled release (shortened).
const HELP = `usage: llama-quantize [--help] [--allow-requantize] [--leave-output-tensor] [--pure] [--imatrix] [--include-weights]
  --pure
                                      disable k-quant mixtures and quantize all tensors to the same type
note: --include-weights and --exclude-weights cannot be used together

-----------------------------------------------------------------------------
 allowed quantization types
-----------------------------------------------------------------------------

   2  or  Q4_0    :  4.34G, +0.4685 ppl @ Llama-3-8B
  19  or  IQ2_XXS :  2.06 bpw quantization
  10  or  Q2_K    :  2.96G, +3.5199 ppl @ Llama-3-8B
  12  or  Q3_K    : alias for Q3_K_M
  12  or  Q3_K_M  :  3.74G, +0.6569 ppl @ Llama-3-8B
  15  or  Q4_K    : alias for Q4_K_M
  15  or  Q4_K_M  :  4.58G, +0.1754 ppl @ Llama-3-8B
  30  or  IQ4_XS  :  4.25 bpw non-linear quantization
   7  or  Q8_0    :  7.96G, +0.0026 ppl @ Llama-3-8B
   1  or  F16     : 14.00G, +0.0020 ppl @ Mistral-7B
   0  or  F32     : 26.00G              @ 7B
          COPY    : only copy tensors, no quantizing
`;

describe("quantization types", () => {
  const types = parseQuantTypes(HELP);

  it("parses llama-quantize's type table, aliases and COPY included", () => {
    expect(types.map((t) => t.name)).toEqual(["Q4_0", "IQ2_XXS", "Q2_K", "Q3_K", "Q3_K_M", "Q4_K", "Q4_K_M", "IQ4_XS", "Q8_0", "F16", "F32", "COPY"]);
    expect(types.find((t) => t.name === "Q4_K")).toMatchObject({ ftype: 15, aliasOf: "Q4_K_M" });
    expect(types.find((t) => t.name === "COPY")?.ftype).toBeUndefined();
  });

  it("makes what the user typed canonical: any case, aliases, file type numbers", () => {
    expect(canonicalType("q4_k_m", types)).toBe("Q4_K_M");
    expect(canonicalType("Q4_K", types)).toBe("Q4_K_M");
    expect(canonicalType("7", types)).toBe("Q8_0");
    expect(canonicalType("12", types)).toBe("Q3_K_M");
    expect(canonicalType("Q4_K_N", types)).toBeUndefined();
  });

  it("suggests the nearest names for a typo", () => {
    expect(suggest("Q4_K_N", types.map((t) => t.name))[0]).toBe("Q4_K_M");
    expect(suggest("Q8", types.map((t) => t.name))).toContain("Q8_0");
    expect(suggest("zzzzzzzz", types.map((t) => t.name))).toEqual([]);
  });

  it("asks for an importance matrix for IQ types and types of 3 bits or fewer", () => {
    for (const t of ["IQ2_XXS", "IQ4_XS", "IQ1_S", "Q2_K", "Q2_K_S", "Q3_K_M", "Q3_K_L", "TQ1_0", "Q1_0"]) expect(requiresImatrix(t), t).toBe(true);
    for (const t of ["Q4_K_M", "Q4_0", "Q5_K_S", "Q6_K", "Q8_0", "F16", "BF16", "COPY"]) expect(requiresImatrix(t), t).toBe(false);
    expect(bitClass("Q3_K_L")).toBe(3);
    expect(bitClass("BF16")).toBe(16);
  });

  it("maps --bits to the usual types", () => {
    expect(BITS_TO_TYPE).toEqual({ 2: "Q2_K", 3: "Q3_K_M", 4: "Q4_K_M", 5: "Q5_K_M", 6: "Q6_K", 8: "Q8_0" });
  });

  it("knows unquantized file types and tensor types", () => {
    for (const t of [undefined, "F32", "F16", "BF16"]) expect(isUnquantized(t)).toBe(true);
    for (const t of ["Q8_0", "Q4_K_M"]) expect(isUnquantized(t)).toBe(false);
    expect(canonicalTensorType("Q8_0")).toBe("q8_0");
    expect(canonicalTensorType("Q6_k")).toBe("q6_K");
    expect(canonicalTensorType("q7_0")).toBeUndefined();
  });
});

describe("tool output parsing", () => {
  it("reads llama-quantize's per-tensor lines and closing sizes", () => {
    expect(parseTensorProgress("[  12/ 201]                  blk.0.attn_q.weight - [  576,   576,     1,     1], type =    f16, converting to q8_0 .. size =     0.63 MiB ->     0.34 MiB")).toEqual({ current: 12, total: 201 });
    expect(parseTensorProgress("llama_model_loader: - kv   0: general.architecture str = llama")).toBeUndefined();
    expect(parseSizeLine("llama_model_quantize_impl: model size  =    12.63 MiB (32.00 BPW)")).toEqual({ which: "model", mib: 12.63, bpw: 32 });
    expect(parseSizeLine("llama_model_quantize_impl: quant size  =     3.36 MiB (8.50 BPW)")).toEqual({ which: "quant", mib: 3.36, bpw: 8.5 });
  });

  it("reads llama-imatrix's chunk count and its newline-less per-chunk lines", () => {
    expect(parseImatrixProgress("compute_imatrix: computing over 42 chunks, n_ctx=256, batch_size=2048, n_seq=8\n")).toEqual({ total: 42, done: undefined });
    expect(parseImatrixProgress("[1]3.1234,[2]2.9876,[3]2.5")).toEqual({ total: undefined, done: 2 });
    expect(parseImatrixProgress("[1]3.1234,[2]2.9876,[3]2.5000,")).toEqual({ total: undefined, done: 3 });
  });
});

describe("derived names", () => {
  const entry = (name: string, type: "local" | "hub" | "builtin"): ModelEntry => ({
    name,
    format: "gguf",
    path: "/x",
    files: [],
    source: type === "hub" ? { type, repo: "a/b", revision: "main", commit: "c", endpoint: "e" } : { type },
    size: 0,
    lineage: [],
    createdAt: "",
  });
  it("is <source>-<type>, path-safe", () => {
    expect(derivedName(entry("tiny-arith", "builtin"), "Q4_K_M")).toBe("tiny-arith-Q4_K_M");
    expect(derivedName(entry("tiny-arith-f32.gguf", "local"), "Q8_0")).toBe("tiny-arith-f32-Q8_0");
    expect(derivedName(entry("bartowski/Qwen2.5-0.5B-Instruct-GGUF:F16", "hub"), "Q4_K_M")).toBe("Qwen2.5-0.5B-Instruct-GGUF-Q4_K_M");
  });
});

describe("calibration data", () => {
  it("reads every dataset shape of the fine-tune formats", () => {
    expect(parseExample({ messages: [{ role: "user", content: "1+1" }, { role: "assistant", content: "2" }] }, "f", 1)).toEqual({ kind: "chat", messages: [{ role: "user", content: "1+1" }, { role: "assistant", content: "2" }] });
    expect(parseExample({ instruction: "Add", input: "1+1", output: "2" }, "f", 1)).toEqual({ kind: "chat", messages: [{ role: "user", content: "Add\n\n1+1" }, { role: "assistant", content: "2" }] });
    expect(parseExample({ conversations: [{ from: "system", value: "s" }, { from: "human", value: "q" }, { from: "gpt", value: "a" }] }, "f", 1)).toMatchObject({ kind: "chat", messages: [{ role: "system" }, { role: "user" }, { role: "assistant" }] });
    expect(parseExample({ prompt: "p", completion: "c" }, "f", 1)).toMatchObject({ kind: "chat" });
    expect(parseExample({ text: "plain" }, "f", 1)).toEqual({ kind: "text", text: "plain" });
  });

  it("names the file, the line and the problem", () => {
    const bad = (o: unknown) => {
      try {
        parseExample(o, "/d/data.jsonl", 7);
      } catch (err) {
        expect(err).toBeInstanceOf(UsageError);
        return (err as Error).message;
      }
      throw new Error("no error");
    };
    expect(bad({ foo: 1 })).toBe("data.jsonl line 7: unknown shape (keys: foo)");
    expect(bad({ messages: [] })).toMatch(/line 7: "messages" must be a non-empty array/);
    expect(bad({ messages: [{ role: "user", content: "" }] })).toMatch(/empty content/);
    expect(bad({ messages: [{ role: "assistant", content: "a" }, { role: "user", content: "q" }] })).toMatch(/roles out of order/);
    expect(bad({ messages: [{ role: "wizard", content: "a" }] })).toMatch(/unknown role "wizard"/);
  });

  it("tells JSONL from plain text", () => {
    expect(looksLikeJsonl("a.jsonl", "")).toBe(true);
    expect(looksLikeJsonl("a.txt", '{"text": "x"}\n')).toBe(true);
    expect(looksLikeJsonl("a.txt", "Once upon a time {x}\n")).toBe(false);
  });

  it("renders chat JSONL through the model's chat template with its real special tokens", async () => {
    const data = path.join(tmp, "calib.jsonl");
    writeFileSync(data, readFileSync(path.join(FIXTURE, "data", "add-train.jsonl"), "utf8").split("\n").slice(0, 3).join("\n") + "\n");
    const out = path.join(tmp, "calib.txt");
    const info = await prepareCalibration(data, path.join(FIXTURE, "gguf", "tiny-arith-f32.gguf"), out);
    expect(info).toMatchObject({ format: "chat-jsonl", examples: 3, parseSpecial: true });
    expect(info.sha256).toMatch(/^[0-9a-f]{64}$/);
    // The leading <s> is left to llama-imatrix, which adds its own.
    expect(readFileSync(out, "utf8")).toBe("<|user|>52+48<|assistant|>100</s><s><|user|>89+40<|assistant|>129</s><s><|user|>69+80<|assistant|>149</s>");
  });

  it("passes plain text through unchanged", async () => {
    const data = path.join(tmp, "calib.txt");
    writeFileSync(data, "Some ordinary text.\nMore of it.\n");
    const out = path.join(tmp, "calib-out.txt");
    const info = await prepareCalibration(data, path.join(FIXTURE, "gguf", "tiny-arith-f32.gguf"), out);
    expect(info).toMatchObject({ format: "text", examples: 0, parseSpecial: false });
    expect(readFileSync(out, "utf8")).toBe("Some ordinary text.\nMore of it.\n");
  });
});

describe("the bench's GGUF writer", () => {
  it("writes a model slm's header reader reads back, vocabulary larger than the reader's 1 MiB window included", async () => {
    const file = path.join(tmp, "big-vocab.gguf");
    const { parameters } = writeLlamaGguf(file, { name: "v", vocab: 49152, hidden: 64, layers: 1, heads: 4, kvHeads: 2, ffn: 128, context: 512, tied: true });
    expect(await readGgufSummary(file)).toMatchObject({ architecture: "llama", fileType: "F16", contextLength: 512, parameters, tensorCount: 11, vocabSize: 49152 });
  });
});
