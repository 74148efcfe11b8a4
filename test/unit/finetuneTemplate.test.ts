import { cpSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { countTokens, lengthStats } from "../../src/backends/finetune/summary.js";
import { ggufChatTemplate, hfChatTemplate, renderChat, renderExample } from "../../src/backends/finetune/template.js";
import type { Message } from "../../src/core/datasets/formats.js";
import { loadDataset } from "../../src/core/datasets/load.js";
import { UsageError } from "../../src/core/errors.js";
import { FIXTURE } from "../helpers/cli.js";

const HF = path.join(FIXTURE, "hf");
const GGUF = path.join(FIXTURE, "gguf", "tiny-arith-f32.gguf");
const q = (user: string, answer?: string): Message[] => [{ role: "user", content: user }, ...(answer ? [{ role: "assistant" as const, content: answer }] : [])];

describe("chat templates", () => {
  it("renders the fixture's chat format from tokenizer_config.json", async () => {
    const t = hfChatTemplate(HF)!;
    expect(t).toMatchObject({ source: "tokenizer_config.json", bosToken: "<s>", eosToken: "</s>" });
    expect(await renderChat(t, q("12+34", "46"))).toBe("<s><|user|>12+34<|assistant|>46</s>");
    expect(await renderChat(t, q("12+34"), { addGenerationPrompt: true })).toBe("<s><|user|>12+34<|assistant|>");
  });

  it("renders the same from the GGUF's metadata, with BOS and EOS from its vocabulary", async () => {
    const t = ggufChatTemplate(GGUF)!;
    expect(t).toMatchObject({ source: "GGUF metadata", bosToken: "<s>", eosToken: "</s>" });
    expect(t.template).toBe(hfChatTemplate(HF)!.template);
    const first = loadDataset(path.join(FIXTURE, "data", "add-eval.jsonl")).examples[0]!;
    expect(await renderExample(t, first)).toMatch(/^<s><\|user\|>\d+\+\d+<\|assistant\|>\d+<\/s>$/);
  });

  it("prefers chat_template.jinja, as newer transformers save it", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "slm-tpl-"));
    cpSync(path.join(HF, "tokenizer_config.json"), path.join(dir, "tokenizer_config.json"));
    writeFileSync(path.join(dir, "chat_template.jinja"), "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{{ eos_token }}");
    const t = hfChatTemplate(dir)!;
    expect(t.source).toBe("chat_template.jinja");
    expect(await renderChat(t, q("a", "b"))).toBe("[user]a[assistant]b</s>");
  });

  it("raw examples are BOS + text + EOS, and a template that raises is a usage error", async () => {
    expect(await renderExample(undefined, { prompt: "2+2=", completion: "4" }, { bos: "<s>", eos: "</s>" })).toBe("<s>2+2=4</s>");
    expect(await renderExample(undefined, { text: "hi" })).toBe("hi");
    await expect(renderExample(undefined, { messages: q("a", "b") })).rejects.toThrow(UsageError);
    const strict = { template: "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}ok", source: "test" };
    await expect(renderChat(strict, [{ role: "system", content: "s" }, ...q("a", "b")])).rejects.toThrow(/cannot render this conversation: System role not supported/);
  });
});

describe("token statistics", () => {
  it("counts each rendered example with the GGUF's vocabulary, special tokens as one token", async () => {
    const t = ggufChatTemplate(GGUF)!;
    const examples = [{ messages: q("12+34", "46") }, { messages: q("99+99", "198") }, { prompt: "1+1=", completion: "2" }];
    const [lengths] = await countTokens(GGUF, t, [examples]);
    // <s> <|user|> 1 2 + 3 4 <|assistant|> 4 6 </s>: digits are single tokens; raw text is <s> 1 + 1 = 2 </s>.
    expect(lengths).toEqual([11, 12, 7]);
  });

  it("summarises lengths: min, median, p95, max, and how many exceed --max-seq-len", () => {
    const lengths = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(lengthStats(lengths, 90)).toEqual({ count: 100, tokens: 5050, min: 1, median: 50, p95: 95, max: 100, overMaxSeqLen: 10 });
    expect(lengthStats([], 10)).toMatchObject({ count: 0, overMaxSeqLen: 0 });
  });
});
