import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadOnnxModel } from "../../src/backends/onnx/model.js";
import { loadOrt } from "../../src/backends/onnx/ort.js";
import { KvCache, OnnxSession } from "../../src/backends/onnx/session.js";
import { missingPythonModules } from "../../src/backends/python/env.js";
import type { RuntimeModel } from "../../src/backends/runtime/types.js";
import type { ModelEntry } from "../../src/backends/store/types.js";
import type { SlmEvent } from "../../src/core/events.js";
import { findExecutable, pathDirs } from "../../src/core/exec.js";

/**
 * slm's ONNX runtime (onnxruntime-node + tokenizers.js + jinja) against transformers on the same model:
 * tiny-arith exported by recipes/export_onnx.py (fp32), and test/helpers/onnxReference.py for what
 * transformers gives (chat template, tokenization, greedy answers, log-likelihoods, perplexity).
 * Needs a Python with torch, transformers, onnx and onnxruntime (SLM_TEST_PYTHON in CI); skipped otherwise.
 */
const ROOT = path.resolve(import.meta.dirname, "../..");
const HF = path.join(ROOT, "test/fixtures/tiny-arith/hf");
const EVAL_TEXT = path.join(ROOT, "test/fixtures/tiny-arith/data/eval-text.txt");
const MODULES = ["torch", "transformers", "sentencepiece", "onnx", "onnxruntime"];

async function findPython(): Promise<{ python?: string; skip?: string }> {
  const reasons: string[] = [];
  for (const candidate of [process.env.SLM_TEST_PYTHON, process.env.SLM_PYTHON, "python3"]) {
    const python = candidate ? await findExecutable(candidate, pathDirs()) : undefined;
    if (!python) continue;
    const missing = Object.keys(await missingPythonModules({ python, source: "SLM_PYTHON" }, MODULES).catch(() => ({ python: "" })));
    if (missing.length === 0) return { python };
    reasons.push(`${python} lacks ${missing.join(", ")}`);
  }
  return { skip: `no Python with ${MODULES.join(", ")} (set SLM_TEST_PYTHON): ${reasons.join("; ")}` };
}

const py = await findPython();
const conversations = [
  { messages: [{ role: "user", content: "12+34" }], generation: true },
  { messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "1+1" }, { role: "assistant", content: "2" }, { role: "user", content: "20+22" }], generation: true },
  { messages: [{ role: "user", content: "7+8" }, { role: "assistant", content: "15" }], generation: false },
] as const;
const raw = ["<s><|user|>12+34<|assistant|>", "plain text 5+5", "<|user|>9+9"];
const greedy = ["12+34", "99+99", "5+7", "40+1"];
/** The chat test's second turn, as one conversation for transformers. */
const secondTurn = [{ role: "user", content: "12+34" }, { role: "assistant", content: "46" }, { role: "user", content: "5+7" }];

interface Reference {
  templates: { text: string; ids: number[] }[];
  raw: number[][];
  literal: number[][];
  decode: string[];
  greedy: string[];
  loglik: number[][];
  ppl: { ppl: number; tokens: number; textTokens: number };
}

describe.skipIf(py.skip !== undefined)(`ONNX runtime against transformers${py.skip ? ` (skipped: ${py.skip})` : ""}`, () => {
  let work: string;
  let dir: string;
  let model: RuntimeModel;
  let ref: Reference;
  const entry = (p: string): ModelEntry => ({ name: "tiny-arith-onnx", format: "onnx", path: p, files: [], source: { type: "local" }, size: 0, lineage: [] });
  let prompts: number[][];
  let loglikCases: { prompt: number[]; continuations: number[][] }[];

  beforeAll(async () => {
    work = mkdtempSync(path.join(tmpdir(), "slm-onnx-model-"));
    dir = path.join(work, "export");
    const env = { ...process.env, OMP_NUM_THREADS: "1" };
    writeFileSync(path.join(work, "export.json"), JSON.stringify({ model: HF, output_dir: dir, dtypes: ["fp32"], threads: 1 }));
    await execa(py.python!, [path.join(ROOT, "recipes/export_onnx.py"), "--config", path.join(work, "export.json")], { env });
    model = await loadOnnxModel(entry(dir), { threads: 1 });
    prompts = [await model.chatPrompt([{ role: "user", content: "12+34" }]), await model.chatPrompt([{ role: "user", content: "3+4" }])];
    const request = {
      conversations,
      raw,
      decode: [[1, 3, 281, 283, 282, 284, 285, 4, 285, 287, 2], [4, 288, 289]],
      greedy: [...greedy, secondTurn],
      loglik: (loglikCases = [
        // A longer continuation between single tokens: the next one must start from the prompt again.
        { prompt: prompts[0], continuations: [[...model.tokenize("46"), 2], model.tokenize("47"), [...model.tokenize("4"), 7, 2], model.tokenize("46")] },
        { prompt: prompts[1], continuations: [model.tokenize("7"), model.tokenize("8")] },
      ]),
      ppl_ctx: 64,
      ppl_file: EVAL_TEXT,
    };
    writeFileSync(path.join(work, "request.json"), JSON.stringify(request));
    const r = await execa(py.python!, [path.join(ROOT, "test/helpers/onnxReference.py"), HF, dir, path.join(work, "request.json")], { env });
    ref = JSON.parse(r.stdout) as Reference;
  }, 180_000);

  afterAll(async () => {
    await model?.dispose();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("renders and tokenizes chat templates as apply_chat_template does (system, multi-turn, no generation prompt)", async () => {
    const { ChatTemplate, readChatTemplate, templateTokens } = await import("../../src/backends/onnx/template.js");
    const config = JSON.parse(readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")) as Record<string, unknown>;
    const template = new ChatTemplate(readChatTemplate(dir, config)!, templateTokens(config), "t");
    conversations.forEach((c, i) => {
      expect(template.render(c.messages, c.generation)).toBe(ref.templates[i]!.text);
    });
    expect(await model.chatPrompt(conversations[0].messages)).toEqual(ref.templates[0]!.ids);
    expect(await model.chatPrompt(conversations[1].messages)).toEqual(ref.templates[1]!.ids);
  });

  it("reads the template from tokenizer_config.json when there is no chat_template.jinja, and prefers the .jinja file", async () => {
    const { readChatTemplate } = await import("../../src/backends/onnx/template.js");
    const copy = path.join(work, "config-only");
    cpSync(dir, copy, { recursive: true, filter: (f) => !f.endsWith(".onnx") });
    rmSync(path.join(copy, "chat_template.jinja"));
    const config = JSON.parse(readFileSync(path.join(copy, "tokenizer_config.json"), "utf8")) as Record<string, unknown>;
    const fromConfig = readChatTemplate(copy, config);
    expect(fromConfig).toBe(readFileSync(path.join(dir, "chat_template.jinja"), "utf8"));
    writeFileSync(path.join(copy, "chat_template.jinja"), "JINJA");
    expect(readChatTemplate(copy, config)).toBe("JINJA");
  });

  it("tokenizes raw prompts as tokenizer(text), special-token text literally as split_special_tokens, and decodes as decode(skip_special_tokens)", async () => {
    const { OnnxTokenizer } = await import("../../src/backends/onnx/tokenizer.js");
    const tok = new OnnxTokenizer({ tokenizer: JSON.parse(readFileSync(path.join(dir, "tokenizer.json"), "utf8")), config: JSON.parse(readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")) });
    raw.forEach((text, i) => {
      expect(tok.encodeWithLeading(text, true)).toEqual(ref.raw[i]);
      expect(model.tokenize(text)).toEqual(ref.literal[i]);
    });
    expect(model.detokenize([1, 3, 281, 283, 282, 284, 285, 4, 285, 287, 2])).toBe(ref.decode[0]);
    expect(model.detokenize([4, 288, 289])).toBe(ref.decode[1]);
  });

  it("greedy answers equal transformers' generate", async () => {
    expect(ref.greedy[0]).toBe("46");
    for (const [i, q] of greedy.entries()) {
      const r = await model.generate({ messages: [{ role: "user", content: q }], temperature: 0, maxTokens: 8 });
      expect(r.text).toBe(ref.greedy[i]);
    }
    const r = await model.generate({ messages: [{ role: "user", content: "12+34" }], temperature: 0 });
    expect(r).toMatchObject({ text: "46", stopReason: "eogToken", promptTokens: 8, completionTokens: 3 });
  });

  it("log-likelihoods equal transformers' log-softmax sums (1e-4), on a slot reused across prompts", async () => {
    const slot = await model.openSlot();
    try {
      const [a, b] = [await slot.logLikelihoods(loglikCases[0]!.prompt, loglikCases[0]!.continuations), await slot.logLikelihoods(loglikCases[1]!.prompt, loglikCases[1]!.continuations)];
      [a, b].forEach((got, i) => got.forEach((v, j) => expect(Math.abs(v - ref.loglik[i]![j]!)).toBeLessThan(1e-4)));
    } finally {
      slot.dispose();
    }
  });

  it("a slot that reuses its cache answers as a fresh one does", async () => {
    const slot = await model.openSlot();
    try {
      const first = await slot.generate({ messages: [{ role: "user", content: "12+34" }], temperature: 0 });
      const held = (slot as unknown as { cache: { tokens: number[] } }).cache.tokens.slice();
      // Same prompt again: everything but the last prompt token is reused.
      const again = await slot.generate({ messages: [{ role: "user", content: "12+34" }], temperature: 0 });
      const other = await slot.generate({ messages: [{ role: "user", content: "99+99" }], temperature: 0, maxTokens: 8 });
      expect(held.length).toBeGreaterThan(8);
      expect(again.text).toBe(first.text);
      expect(other.text).toBe(ref.greedy[1]);
    } finally {
      slot.dispose();
    }
  });

  it("stop strings end generation and are left out; max tokens stops with maxTokens; a seed reproduces a sampled answer", async () => {
    const stopped = await model.generate({ messages: [{ role: "user", content: "12+34" }], temperature: 0, stop: ["6"] });
    expect(stopped).toMatchObject({ text: "4", stopReason: "customStopTrigger" });
    const capped = await model.generate({ messages: [{ role: "user", content: "12+34" }], temperature: 0, maxTokens: 1 });
    expect(capped).toMatchObject({ text: "4", stopReason: "maxTokens", completionTokens: 1 });
    const sample = (seed: number) => model.generate({ prompt: "<s><|user|>1", temperature: 1.5, topK: 0, topP: 1, minP: 0, seed, maxTokens: 12 });
    expect((await sample(42)).text).toBe((await sample(42)).text);
    const streamed: string[] = [];
    const r = await model.generate({ messages: [{ role: "user", content: "40+1" }], temperature: 0, onText: (c) => streamed.push(c) });
    expect(streamed.join("")).toBe(r.text);
  });

  it("perplexity equals llama-perplexity's method computed on transformers' logits", async () => {
    const text = readFileSync(EVAL_TEXT, "utf8").replace(/\n$/, "");
    const r = await model.perplexity(text, { ctxSize: 64 });
    expect(r.tokens).toBe(ref.ppl.tokens);
    expect(r.textTokens).toBe(ref.ppl.textTokens);
    expect(Math.abs(r.ppl - ref.ppl.ppl) / ref.ppl.ppl).toBeLessThan(1e-4);
  });

  it("refuses a JSON schema, and an aborted generation with no token yet is cancelled", async () => {
    await expect(model.generate({ messages: [{ role: "user", content: "1+1" }], jsonSchema: { type: "object" } })).rejects.toMatchObject({ exitCode: 2, message: expect.stringContaining("not supported on ONNX") });
    const ac = new AbortController();
    ac.abort();
    await expect(model.generate({ messages: [{ role: "user", content: "1+1" }], signal: ac.signal })).rejects.toMatchObject({ exitCode: 130 });
  });

  it("tokenize with bos puts the tokenizer's BOS in front; a prompt that leaves no room to answer is a ContextLengthError", async () => {
    expect(model.tokenize("", { bos: true })).toEqual([1]);
    expect(model.tokenize(raw[2], { special: true, bos: true })).toEqual(ref.raw[2]);
    const small = await loadOnnxModel(entry(dir), { threads: 1, contextSize: 8 });
    try {
      // The chat prompt for 12+34 is 8 tokens: no room for the answer.
      await expect(small.generate({ messages: [{ role: "user", content: "12+34" }], temperature: 0 })).rejects.toMatchObject({ name: "ContextLengthError", promptTokens: 8, contextSize: 8 });
      // 7 prompt tokens: the context fills after two answer tokens, and generation stops there.
      expect(await small.generate({ messages: [{ role: "user", content: "12+3" }], temperature: 0 })).toMatchObject({ promptTokens: 7, completionTokens: 2, stopReason: "maxTokens" });
    } finally {
      await small.dispose();
    }
  });

  it("warns (once, a log event) when the chat template leaves out the system prompt; not when it renders it", async () => {
    const events: SlmEvent[] = [];
    const system = [{ role: "system" as const, content: "99+1" }, { role: "user" as const, content: "12+34" }];
    const dropsIt = await loadOnnxModel(entry(dir), { threads: 1 }, { onEvent: (e) => events.push(e) });
    try {
      await dropsIt.generate({ messages: [{ role: "user", content: "12+34" }], temperature: 0, maxTokens: 2 });
      expect(events.filter((e) => e.type === "log" && e.level === "warn")).toEqual([]);
      await dropsIt.generate({ messages: system, temperature: 0, maxTokens: 2 });
      await dropsIt.generate({ messages: system, temperature: 0, maxTokens: 2 });
      const warnings = events.filter((e) => e.type === "log" && e.level === "warn");
      expect(warnings).toMatchObject([{ message: "tiny-arith-onnx's chat template leaves out the system prompt: the model answers as if none were given." }]);
    } finally {
      await dropsIt.dispose();
    }
    // The same model with a template that writes system turns: no warning.
    const copy = path.join(work, "with-system");
    cpSync(dir, copy, { recursive: true });
    const template = readFileSync(path.join(dir, "chat_template.jinja"), "utf8");
    writeFileSync(path.join(copy, "chat_template.jinja"), template.replace("{% if m['role'] == 'user' %}", "{% if m['role'] == 'system' %}{{ m['content'] }}{% elif m['role'] == 'user' %}"));
    const usesIt = await loadOnnxModel(entry(copy), { threads: 1 }, { onEvent: (e) => events.push(e) });
    try {
      events.length = 0;
      await usesIt.generate({ messages: system, temperature: 0, maxTokens: 2 });
      expect(events.filter((e) => e.type === "log" && e.level === "warn")).toEqual([]);
    } finally {
      await usesIt.dispose();
    }
  });

  it("--ctx past the training length (256) is honoured with a warning: the exported graph computes rotary angles from position_ids", async () => {
    const events: SlmEvent[] = [];
    const long = await loadOnnxModel(entry(dir), { threads: 1, contextSize: 1024, capContextAtTraining: true }, { onEvent: (e) => events.push(e) });
    try {
      expect(long.contextSize).toBe(1024);
      expect(events.filter((e) => e.type === "log" && e.level === "warn")).toMatchObject([{ message: expect.stringContaining("--ctx 1024 is more than tiny-arith-onnx was trained on (256 tokens)") }]);
      const r = await long.generate({ prompt: `${"1+2+".repeat(100)}3`, temperature: 0, maxTokens: 4 });
      expect(r.promptTokens).toBeGreaterThan(256);
      expect(r.completionTokens).toBeGreaterThan(0);
    } finally {
      await long.dispose();
    }
  });

  it("chat keeps the conversation between turns and counts the context it holds", async () => {
    const chat = await model.openChat({ temperature: 0 });
    const a = await chat.send("12+34");
    const b = await chat.send("5+7");
    // Answered after the whole conversation so far, as transformers answers it.
    expect([a.text, b.text]).toEqual(["46", ref.greedy[greedy.length]]);
    expect(chat.history().messages).toEqual([
      { role: "user", content: "12+34" },
      { role: "assistant", content: "46" },
      { role: "user", content: "5+7" },
      { role: "assistant", content: ref.greedy[greedy.length] },
    ]);
    expect(b.context.used).toBeGreaterThan(a.context.used);
    chat.reset();
    expect(chat.contextUsed().used).toBe(0);
  });

  it("a call that wants the last row of logits returns that row alone, equal to the last of every row, and the same cache", async () => {
    const config = JSON.parse(readFileSync(path.join(dir, "config.json"), "utf8")) as Record<string, unknown>;
    const session = await OnnxSession.create(await loadOrt(), path.join(dir, "onnx/model.onnx"), { threads: 1, config });
    try {
      const tokens = prompts[0]!;
      const [every, last, none] = [new KvCache(), new KvCache(), new KvCache()];
      const all = await session.forward(every, tokens, "all");
      const one = await session.forward(last, tokens, "last");
      const nothing = await session.forward(none, tokens, "none");
      expect([all.rows, one.rows, nothing.rows]).toEqual([tokens.length, 1, 0]);
      const want = all.logits.subarray((all.rows - 1) * all.vocab);
      expect(one.logits.length).toBe(want.length);
      want.forEach((v, i) => expect(Math.abs(one.logits[i]! - v)).toBeLessThan(1e-4));
      // The next token's logits from each cache agree: all three hold the same keys and values.
      const next = await Promise.all([every, last, none].map((c) => session.forward(c, [5])));
      next.slice(1).forEach((r) => r.logits.forEach((v, i) => expect(Math.abs(v - next[0]!.logits[i]!)).toBeLessThan(1e-4)));
    } finally {
      await session.dispose();
    }
  });

  it("bench reports pp and tg tests in llama-bench's shape", async () => {
    const r = await model.bench({ promptTokens: 16, genTokens: 4, repetitions: 2 });
    expect(r.tests.map((t) => [t.name, t.samples.length])).toEqual([["pp16", 2], ["tg4", 2]]);
    expect(r.tests.every((t) => t.mean > 0)).toBe(true);
    expect(r.model.parameters).toBe(3_311_872);
  });
});
