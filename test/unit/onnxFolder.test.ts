import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa } from "execa";
import { afterAll, describe, expect, it } from "vitest";
import { readOnnxFolder } from "../../src/backends/onnx/folder.js";
import { loadOnnxModel } from "../../src/backends/onnx/model.js";
import type { ContextLengthError } from "../../src/backends/runtime/errors.js";
import type { ModelEntry } from "../../src/backends/store/types.js";
import type { SlmEvent } from "../../src/core/events.js";
import { missingPythonModules } from "../../src/backends/python/env.js";
import { EXIT } from "../../src/core/errors.js";
import { findExecutable, pathDirs } from "../../src/core/exec.js";
import { handmadeOnnxFolder } from "../helpers/onnxHandmade.js";

const root = mkdtempSync(path.join(tmpdir(), "slm-onnx-folder-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const LLAMA = { architectures: ["LlamaForCausalLM"], model_type: "llama", eos_token_id: 2, max_position_embeddings: 256, vocab_size: 320 };
/** The smallest tokenizer.json tokenizers.js accepts: one word-level token. */
const TOKENIZER = { version: "1.0", added_tokens: [], normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, model: { type: "WordLevel", vocab: { a: 0 }, unk_token: "a" } };

let n = 0;
/** A folder with the given files (JSON values are written as JSON; strings as they are). */
function folder(files: Record<string, unknown>): string {
  const dir = path.join(root, `m${n++}`);
  for (const [rel, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    writeFileSync(path.join(dir, rel), typeof content === "string" ? content : JSON.stringify(content));
  }
  mkdirSync(dir, { recursive: true });
  return dir;
}

const entry = (dir: string): ModelEntry => ({ name: "m", format: "onnx", path: dir, files: [], source: { type: "local" }, size: 0, lineage: [] });

function usageError(fn: () => unknown): Error & { exitCode: number; hint?: string } {
  try {
    fn();
  } catch (err) {
    expect((err as { exitCode: number }).exitCode).toBe(EXIT.usage);
    return err as Error & { exitCode: number; hint?: string };
  }
  throw new Error("expected a UsageError");
}

describe("ONNX folder checks before loading", () => {
  it("picks the CPU default variant (q4, then q8, then fp32) and reads EOS from generation_config.json first", () => {
    const dir = folder({ "config.json": LLAMA, "tokenizer.json": TOKENIZER, "generation_config.json": { eos_token_id: [2, 7] }, "onnx/model.onnx": "", "onnx/model_q4.onnx": "", "onnx/model_quantized.onnx": "" });
    const f = readOnnxFolder(dir);
    expect(f.dtype).toBe("q4");
    expect(f.file).toBe(path.join(dir, "onnx/model_q4.onnx"));
    expect(f.dtypes.sort()).toEqual(["fp32", "q4", "q8"]);
    expect(f.eos).toEqual([2, 7]);
    expect(readOnnxFolder(dir, { dtype: "fp32" }).file).toBe(path.join(dir, "onnx/model.onnx"));
  });

  it("a dtype the folder lacks names the ones it has", () => {
    const dir = folder({ "config.json": LLAMA, "tokenizer.json": TOKENIZER, "onnx/model.onnx": "", "onnx/model_q4.onnx": "" });
    const err = usageError(() => readOnnxFolder(dir, { dtype: "fp16" }));
    expect(err.message).toContain("no fp16 variant (onnx/model_fp16.onnx)");
    expect(err.message).toMatch(/it has (fp32, q4|q4, fp32)/);
  });

  it("older exports' decoder_model_merged files are found when there is no model*.onnx", () => {
    const dir = folder({ "config.json": LLAMA, "tokenizer.json": TOKENIZER, "onnx/decoder_model_merged_quantized.onnx": "" });
    expect(readOnnxFolder(dir).file).toBe(path.join(dir, "onnx/decoder_model_merged_quantized.onnx"));
  });

  it("a folder without tokenizer.json says so, naming the slow tokenizer it has and how to write one", () => {
    const dir = folder({ "config.json": LLAMA, "tokenizer.model": "x", "onnx/model.onnx": "" });
    const err = usageError(() => readOnnxFolder(dir));
    expect(err.message).toContain("has no tokenizer.json (only tokenizer.model)");
    expect(err.hint).toContain("save_pretrained");
  });

  it("encoder-only, encoder-decoder and vision models are refused by what config.json says", () => {
    const bert = usageError(() => readOnnxFolder(folder({ "config.json": { architectures: ["BertModel"], model_type: "bert" }, "tokenizer.json": TOKENIZER, "onnx/model.onnx": "" })));
    expect(bert.message).toContain("BertModel (bert)");
    expect(bert.message).toContain("decoder-only");
    const t5 = usageError(() => readOnnxFolder(folder({ "config.json": { architectures: ["T5ForConditionalGeneration"], is_encoder_decoder: true }, "tokenizer.json": TOKENIZER, "onnx/model.onnx": "" })));
    expect(t5.message).toContain("encoder-decoder");
    const vlm = usageError(() => readOnnxFolder(folder({ "config.json": { architectures: ["LlavaForConditionalGeneration"], vision_config: {} }, "tokenizer.json": TOKENIZER, "onnx/model.onnx": "" })));
    expect(vlm.message).toContain("vision model");
  });

  it("no config.json, no .onnx file, or a config that is not JSON: UsageErrors naming the file", () => {
    expect(usageError(() => readOnnxFolder(folder({ "tokenizer.json": TOKENIZER, "onnx/model.onnx": "" }))).message).toContain("config.json is missing");
    expect(usageError(() => readOnnxFolder(folder({ "config.json": LLAMA, "tokenizer.json": TOKENIZER }))).message).toContain("has no ONNX model file");
    expect(usageError(() => readOnnxFolder(folder({ "config.json": "{not json", "tokenizer.json": TOKENIZER, "onnx/model.onnx": "" }))).message).toContain("config.json is not valid JSON");
  });

  it("a truncated or non-ONNX file is a UsageError naming it, not onnxruntime's stack trace", async () => {
    const dir = folder({ "config.json": LLAMA, "tokenizer.json": TOKENIZER, "onnx/model.onnx": "\x08\x07\x12\x04trun" });
    const err = await loadOnnxModel(entry(dir), { threads: 1 }).then(
      () => undefined,
      (e: unknown) => e as Error & { exitCode: number; hint?: string },
    );
    expect(err?.exitCode).toBe(EXIT.usage);
    expect(err?.message).toContain(`${path.join(dir, "onnx/model.onnx")} cannot be loaded by onnxruntime`);
    expect(err?.hint).toContain("truncated");
  });

  it("a caller that will render chat messages (run, chat) is told the model has no chat template before the graph is loaded", async () => {
    // The graph is not ONNX at all: had it been loaded first, that would be the error.
    const dir = folder({ "config.json": LLAMA, "tokenizer.json": TOKENIZER, "onnx/model.onnx": "not an onnx file" });
    await expect(loadOnnxModel(entry(dir), { threads: 1, chat: true })).rejects.toMatchObject({ exitCode: EXIT.usage, message: "m has no chat template (neither chat_template.jinja nor chat_template in tokenizer_config.json)." });
    // A raw completion needs no template: then the graph is what is wrong.
    await expect(loadOnnxModel(entry(dir), { threads: 1 })).rejects.toMatchObject({ exitCode: EXIT.usage, message: expect.stringContaining("cannot be loaded by onnxruntime") });
  });

  it("LoRA adapters are refused, pointing at exporting the merged fine-tune", async () => {
    const dir = folder({ "config.json": LLAMA, "tokenizer.json": TOKENIZER, "onnx/model.onnx": "" });
    await expect(loadOnnxModel(entry(dir), { lora: [{ path: "/a.gguf", scale: 1 }] })).rejects.toMatchObject({ exitCode: EXIT.usage, hint: expect.stringContaining("--format onnx") });
  });
});

describe("ONNX tokenizer", () => {
  it("ids past the tokenizer's vocabulary (a model's padded logits) decode to nothing instead of failing", async () => {
    const { OnnxTokenizer } = await import("../../src/backends/onnx/tokenizer.js");
    const tok = new OnnxTokenizer({ tokenizer: TOKENIZER, config: {} });
    expect(tok.decode([0, 5000, 0])).toBe("a a");
    expect(tok.decode([5000])).toBe("");
  });
});

/** A Python with the onnx package, to write graphs slm did not make; undefined (and the tests skipped) without one. */
async function onnxPython(): Promise<string | undefined> {
  for (const candidate of [process.env.SLM_TEST_PYTHON, process.env.SLM_PYTHON, "python3"]) {
    const python = candidate ? await findExecutable(candidate, pathDirs()) : undefined;
    if (python && Object.keys(await missingPythonModules({ python, source: "SLM_PYTHON" }, ["onnx"]).catch(() => ({ onnx: "" }))).length === 0) return python;
  }
  return undefined;
}
const python = await onnxPython();

describe.skipIf(!python)("ONNX graphs that are not the decoder layout (written by the onnx package)", () => {
  async function graphFolder(graph: string): Promise<string> {
    const graphs = path.join(root, "graphs");
    mkdirSync(graphs, { recursive: true });
    await execa(python!, [path.resolve(import.meta.dirname, "../helpers/onnxGraphs.py"), graphs]);
    const dir = folder({ "config.json": LLAMA, "tokenizer.json": TOKENIZER });
    mkdirSync(path.join(dir, "onnx"), { recursive: true });
    writeFileSync(path.join(dir, "onnx/model.onnx"), readFileSync(path.join(graphs, `${graph}.onnx`)));
    return dir;
  }

  it("a graph without the KV cache inputs and outputs says what it lacks", async () => {
    const dir = await graphFolder("no-cache");
    await expect(loadOnnxModel(entry(dir), { threads: 1 })).rejects.toMatchObject({ exitCode: EXIT.usage, message: expect.stringContaining("lacks past_key_values.0.key, past_key_values.0.value, present.0.key, present.0.value") });
  });

  it("--ctx past the training length on a graph with a table of positions: capped with a warning saying why, and a too-long prompt is not told to give a larger --ctx", async () => {
    const dir = await graphFolder("learned-positions");
    writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...LLAMA, max_position_embeddings: 8 }));
    const events: SlmEvent[] = [];
    const model = await loadOnnxModel(entry(dir), { threads: 1, contextSize: 32, capContextAtTraining: true }, { onEvent: (e) => events.push(e) });
    try {
      expect(model.contextSize).toBe(8);
      expect(events.filter((e) => e.type === "log" && e.level === "warn")).toMatchObject([{ message: "--ctx 32 is more than m's graph takes: using its training length, 8 tokens." }]);
      const err = await model.generate({ tokens: new Array<number>(12).fill(0) }).catch((e: unknown) => e as ContextLengthError);
      expect(err).toMatchObject({ name: "ContextLengthError", promptTokens: 12, contextSize: 8, hint: "m's graph takes at most 8 positions (its training length); shorten the prompt." });
    } finally {
      await model.dispose();
    }
  });

  it("the load step counts threads in the singular for one (\"1 thread\", not \"1 threads\")", async () => {
    const events: SlmEvent[] = [];
    const model = await loadOnnxModel(entry(await graphFolder("learned-positions")), { threads: 1 }, { onEvent: (e) => events.push(e) });
    await model.dispose();
    const done = events.find((e) => e.type === "step" && e.status === "done");
    expect(done).toMatchObject({ detail: expect.stringMatching(/^1 thread, \d+ ms$/) });
  });

  it("a variant whose external data file (model.onnx_data) is missing names that file, before onnxruntime is loaded", async () => {
    const dir = await handmadeOnnxFolder(python!, path.join(root, "external"), { fp32: "model.onnx" }, ["fp32"]);
    rmSync(path.join(dir, "onnx", "model.onnx_data"));
    writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(TOKENIZER));
    const err = await loadOnnxModel(entry(dir), { threads: 1 }).catch((e: unknown) => e as Error & { exitCode: number; hint?: string });
    expect(err).toMatchObject({ exitCode: EXIT.usage, message: `m: model.onnx keeps its weights in model.onnx_data, which is missing from ${path.join(dir, "onnx")}.` });
    expect(err.hint).not.toMatch(/truncated/);
  });

  it("a decoder-shaped graph with an input slm cannot feed names it when it loads, not at the first token", async () => {
    const dir = await graphFolder("extra-input");
    await expect(loadOnnxModel(entry(dir), { threads: 1 })).rejects.toMatchObject({ exitCode: EXIT.usage, message: expect.stringContaining("inputs slm does not know how to feed: pixel_values") });
  });
});
