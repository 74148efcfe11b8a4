import path from "node:path";
import { execa, type ResultPromise } from "execa";
import type { Token } from "node-llama-cpp";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { continuationLogLikelihoods } from "../../src/backends/llama/likelihood.js";
import { type LoadedModel, loadModel } from "../../src/backends/llama/loader.js";
import { resolveModel } from "../../src/backends/store/resolve.js";
import { BIN, FIXTURE, sandbox } from "../helpers/cli.js";
import { tokenizerPythonForTests } from "../helpers/python.js";
import { listening } from "../helpers/serveProcess.js";

/**
 * logprobs, echo, /tokenize and /detokenize of `slm serve`, against an independent computation: the
 * same tokens scored afresh in this process through node-llama-cpp's own full distribution
 * (likelihood.ts, what `slm eval` scores multiple choice with), and the fixture's Hugging Face tokenizer.
 */

const KEY = "sk-logprobs-test";

interface Legacy {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[];
  text_offset: number[];
}
interface CompletionBody {
  choices: { index: number; text: string; logprobs: Legacy | null; finish_reason: string }[];
}
interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

describe("slm serve logprobs", () => {
  const sb = sandbox();
  let proc: ResultPromise<{ reject: false }>;
  let url: string;
  let client: OpenAI;
  let loaded: LoadedModel;

  const post = async <T>(route: string, body: unknown): Promise<{ status: number; json: T }> => {
    const r = await fetch(`${url}${route}`, { method: "POST", headers: { "Content-Type": "application/json", Authorization: `Bearer ${KEY}` }, body: JSON.stringify(body) });
    return { status: r.status, json: (await r.json()) as T };
  };

  /** ln p of each of `tokens` after `prefix` and the tokens before it, scored afresh. */
  const scored = async (prefix: number[], tokens: number[]): Promise<number[]> => {
    const sequence = loaded.context.getSequence();
    try {
      const out: number[] = [];
      for (let i = 0; i < tokens.length; i++) out.push((await continuationLogLikelihoods(sequence, [...prefix, ...tokens.slice(0, i)] as Token[], [[tokens[i]! as Token]]))[0]!);
      return out;
    } finally {
      sequence.dispose();
    }
  };
  const idOf = (text: string) => loaded.model.tokenize(text, true)[0]!;
  /** The chat prompt of one user message, as the fixture's template renders it. */
  const chatPrompt = (q: string) => [1, ...loaded.model.tokenize(`<|user|>${q}<|assistant|>`, true)];

  beforeAll(async () => {
    proc = execa("node", [BIN, "serve", "tiny-arith", "--port", "0", "--threads", "1", "--parallel", "2"], { env: { ...sb.env, SLM_API_KEY: KEY }, extendEnv: true, reject: false });
    url = (await listening(proc, 60_000)).url;
    client = new OpenAI({ baseURL: `${url}/v1`, apiKey: KEY, maxRetries: 0, timeout: 60_000 });
    loaded = await loadModel(resolveModel("tiny-arith"), { threads: 1, sequences: 1, contextSize: 256 });
  }, 90_000);

  afterAll(async () => {
    proc?.kill("SIGINT");
    await proc;
    await loaded?.dispose();
  });

  it("chat: logprobs and top_logprobs in OpenAI's shape (official client), equal to the tokens scored afresh, sampled at any temperature", async () => {
    const r = await client.chat.completions.create({ model: "tiny-arith", messages: [{ role: "user", content: "12+34" }], logprobs: true, top_logprobs: 20, temperature: 1.5, seed: 3, max_tokens: 6 });
    const choice = r.choices[0]!;
    const content = choice.logprobs!.content!;
    // One entry per token of the message, in order; the end token is not part of it.
    expect(content.map((t) => t.token).join("")).toBe(choice.message.content);
    const expected = await scored(chatPrompt("12+34"), content.map((t) => idOf(t.token)));
    content.forEach((t, i) => {
      expect(t.logprob).toBeCloseTo(expected[i]!, 4);
      expect(t.bytes).toEqual([...Buffer.from(t.token)]);
      expect(t.top_logprobs).toHaveLength(20);
      expect(t.top_logprobs[0]!.logprob).toBeGreaterThanOrEqual(t.top_logprobs[1]!.logprob);
      // The model's own distribution: the most likely token is at least as likely as the one sampled.
      expect(t.top_logprobs[0]!.logprob).toBeGreaterThanOrEqual(t.logprob - 1e-9);
      // A byte token (one byte of a longer character) shows as U+FFFD; its bytes are then that one byte.
      for (const a of t.top_logprobs) expect(a.bytes).toEqual(a.token === "\uFFFD" ? [expect.any(Number)] : [...Buffer.from(a.token)]);
    });
  }, 30_000);

  it("chat stream: each chunk's logprobs are the tokens of its text, and all of them those of the whole answer", async () => {
    const ask = { model: "tiny-arith", messages: [{ role: "user" as const, content: "27+45" }], logprobs: true, top_logprobs: 2, temperature: 0 };
    const whole = await client.chat.completions.create(ask);
    const stream = await client.chat.completions.create({ ...ask, stream: true });
    let text = "";
    const tokens: { token: string; logprob: number }[] = [];
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      if (!c) continue;
      const got = c.logprobs?.content ?? [];
      expect(got.map((t) => t.token).join("")).toBe(c.delta.content ?? "");
      text += c.delta.content ?? "";
      tokens.push(...got);
    }
    expect(text).toBe(whole.choices[0]!.message.content);
    expect(tokens.map((t) => [t.token, t.logprob])).toEqual(whole.choices[0]!.logprobs!.content!.map((t) => [t.token, t.logprob]));
  }, 30_000);

  it("completions: legacy logprobs, the end token listed last, a stop sequence's tokens left out, two requests at once (--parallel 2) as alone", async () => {
    const prompt = "<|user|>12+34<|assistant|>";
    const ask = (extra: object) => post<CompletionBody>("/v1/completions", { model: "tiny-arith", prompt, logprobs: 2, temperature: 0, ...extra });
    const alone = (await ask({})).json.choices[0]!;
    expect(alone.text).toBe("46");
    const lp = alone.logprobs!;
    // "4", "6", then the end-of-generation token the answer stopped on (OpenAI lists it too).
    expect(lp.tokens).toEqual(["4", "6", "</s>"]);
    expect(lp.text_offset).toEqual([0, 1, 2]);
    const expected = await scored([1, ...loaded.model.tokenize(prompt, true)], [idOf("4"), idOf("6"), 2]);
    lp.token_logprobs.forEach((x, i) => expect(x).toBeCloseTo(expected[i]!, 4));
    lp.top_logprobs.forEach((top) => expect(Object.keys(top!)).toHaveLength(2));
    // The stop sequence "6" is sampled, then cut from the text: its token goes too.
    const cut = (await ask({ stop: ["6"] })).json.choices[0]!;
    expect(cut.text).toBe("4");
    expect(cut.logprobs!.tokens).toEqual(["4"]);
    expect(cut.logprobs!.token_logprobs[0]).toBe(lp.token_logprobs[0]);
    const both = await Promise.all([ask({}), ask({ prompt: "<|user|>5+61<|assistant|>" })]);
    expect(both[0].json.choices[0]!.logprobs!.token_logprobs.map((x) => x!.toFixed(5))).toEqual(lp.token_logprobs.map((x) => x!.toFixed(5)));
    const other = both[1].json.choices[0]!;
    expect(other.text).toBe("66");
    const otherExpected = await scored([1, ...loaded.model.tokenize("<|user|>5+61<|assistant|>", true)], [idOf("6"), idOf("6"), 2]);
    other.logprobs!.token_logprobs.forEach((x, i) => expect(x).toBeCloseTo(otherExpected[i]!, 4));
  }, 30_000);

  it("echo: the prompt's own tokens and log-probabilities first (the first null), with max_tokens 0 or 1; a token-id prompt is echoed as given", async () => {
    const ids = loaded.model.tokenize("<|user|>13+54<|assistant|>67", true);
    const r = await post<CompletionBody>("/v1/completions", { model: "tiny-arith", prompt: [ids, "<|user|>13+54<|assistant|>"], echo: true, logprobs: 1, max_tokens: 1, temperature: 0 });
    expect(r.status).toBe(200);
    const [a, b] = r.json.choices;
    const lp = a!.logprobs!;
    // The prompt as given (BOS, put in front by the server, is not echoed), then the one generated token.
    expect(lp.tokens).toHaveLength(ids.length + 1);
    expect(lp.tokens.slice(0, -1).join("")).toBe("<|user|>13+54<|assistant|>67");
    expect(a!.text.startsWith("<|user|>13+54<|assistant|>67")).toBe(true);
    expect(lp.token_logprobs[0]).toBeNull();
    expect(lp.top_logprobs[0]).toBeNull();
    // One token at a time here, the whole prompt in one batch there: llama.cpp's numbers move by ~1e-4 with the batch's shape.
    const expected = await scored([1, ids[0]!], ids.slice(1));
    lp.token_logprobs.slice(1, ids.length).forEach((x, i) => expect(x).toBeCloseTo(expected[i]!, 3));
    // What lm-evaluation-harness reads: the continuation "67" after its context, and whether it is greedy.
    const ctxlen = ids.length - 2;
    expect(lp.token_logprobs.slice(ctxlen, -1)).toHaveLength(2);
    lp.top_logprobs.slice(1).forEach((top, i) => expect(Math.max(...Object.values(top!))).toBeGreaterThanOrEqual(lp.token_logprobs[i + 1]!));
    expect(b!.text).toBe("<|user|>13+54<|assistant|>6");
    // max_tokens 0: the prompt only.
    const none = await post<CompletionBody>("/v1/completions", { model: "tiny-arith", prompt: "<|user|>13+54<|assistant|>", echo: true, logprobs: 0, max_tokens: 0 });
    expect(none.status).toBe(200);
    expect(none.json.choices[0]!.text).toBe("<|user|>13+54<|assistant|>");
    expect(none.json.choices[0]!.logprobs!.tokens).toHaveLength(7);
    expect(none.json.choices[0]!.finish_reason).toBe("length");
    // Echo streamed: the prompt comes first, with its tokens.
    const s = await fetch(`${url}/v1/completions`, { method: "POST", headers: { "Content-Type": "application/json", Authorization: `Bearer ${KEY}` }, body: JSON.stringify({ model: "tiny-arith", prompt: "<|user|>13+54<|assistant|>", echo: true, logprobs: 1, max_tokens: 3, temperature: 0, stream: true }) });
    const events = (await s.text()).split("\n\n").filter((e) => e.startsWith("data: {")).map((e) => JSON.parse(e.slice(6)) as CompletionBody);
    expect(events[0]!.choices[0]!.text).toBe("<|user|>13+54<|assistant|>");
    expect(events[0]!.choices[0]!.logprobs!.token_logprobs[0]).toBeNull();
    expect(events.map((e) => e.choices[0]!.text).join("")).toBe("<|user|>13+54<|assistant|>67");
    const streamedTokens = events.flatMap((e) => e.choices[0]!.logprobs?.tokens ?? []);
    expect(streamedTokens).toEqual(["<|user|>", "1", "3", "+", "5", "4", "<|assistant|>", "6", "7", "</s>"]);
  }, 30_000);

  it("/tokenize and /detokenize: llama-server's shape, the fixture's Hugging Face tokenizer's ids, a round trip", async () => {
    const text = "<|user|>12+34<|assistant|>46</s>";
    const t = await post<{ tokens: number[] }>("/tokenize", { content: text });
    expect(t.status).toBe(200);
    const { python, skip } = await tokenizerPythonForTests();
    if (python) {
      const hf = (await execa(python, ["-c", "import sys,json; from transformers import AutoTokenizer as T; print(json.dumps(T.from_pretrained(sys.argv[1])(sys.argv[2], add_special_tokens=False).input_ids))", path.join(FIXTURE, "hf"), text])).stdout;
      expect(t.json.tokens).toEqual(JSON.parse(hf));
    } else console.warn(`HF tokenizer comparison skipped: ${skip}`);
    const withBos = await post<{ tokens: number[] }>("/tokenize", { content: "12", add_special: true });
    expect(withBos.json.tokens).toEqual([1, idOf("1"), idOf("2")]);
    const pieces = await post<{ tokens: { id: number; piece: string }[] }>("/tokenize", { content: "<|user|>7", with_pieces: true, model: "tiny-arith" });
    expect(pieces.json.tokens).toEqual([{ id: 3, piece: "<|user|>" }, { id: idOf("7"), piece: "7" }]);
    // A byte token's piece is not whole characters: its bytes, as llama-server gives them (é is C3 A9).
    const bytes = await post<{ tokens: { id: number; piece: string | number[] }[] }>("/tokenize", { content: "é", with_pieces: true });
    expect(bytes.json.tokens.map((t) => t.piece)).toEqual([[0xc3], [0xa9]]);
    const d = await post<{ content: string; prompt: string }>("/detokenize", { tokens: t.json.tokens });
    expect(d.json.content).toBe(text);
    // vLLM's names, which lm-evaluation-harness's remote tokenizer sends.
    expect((await post<{ tokens: number[] }>("/tokenize", { prompt: text, add_special_tokens: false })).json.tokens).toEqual(t.json.tokens);
    expect(d.json.prompt).toBe(text);
    const info = (await (await fetch(`${url}/tokenizer_info`, { headers: { Authorization: `Bearer ${KEY}` } })).json()) as Record<string, unknown>;
    expect(info).toMatchObject({ bos_token: "<s>", eos_token: "</s>" });
    // Behind the API key.
    expect((await fetch(`${url}/tokenize`, { method: "POST", body: JSON.stringify({ content: "1" }) })).status).toBe(401);
    expect((await post<ErrorBody>("/detokenize", { tokens: [99999] })).status).toBe(400);
    // A wrong path (vLLM's prefix) is told where these endpoints are.
    const astray = await post<ErrorBody>("/v1/tokenize", { content: "1" });
    expect(astray.status).toBe(404);
    expect(astray.json.error.message).toMatch(/\/tokenize, \/detokenize, \/tokenizer_info/);
  }, 30_000);

  it("bad values are 400s in OpenAI's error shape", async () => {
    const chat = { model: "tiny-arith", messages: [{ role: "user", content: "1+1" }] };
    const cases: [string, object, string][] = [
      ["/v1/chat/completions", { ...chat, logprobs: true, top_logprobs: 21 }, "top_logprobs"],
      ["/v1/chat/completions", { ...chat, top_logprobs: 2 }, "top_logprobs"],
      ["/v1/chat/completions", { ...chat, logprobs: 3 }, "logprobs"],
      ["/v1/completions", { model: "tiny-arith", prompt: "1", logprobs: true }, "logprobs"],
      ["/v1/completions", { model: "tiny-arith", prompt: "1", logprobs: 21 }, "logprobs"],
      ["/v1/completions", { model: "tiny-arith", prompt: "1", max_tokens: 0 }, "max_tokens"],
      ["/v1/completions", { model: "tiny-arith", prompt: "1", echo: "yes" }, "echo"],
      // A completions-only field on chat would be ignored: the prompt would not come back.
      ["/v1/chat/completions", { ...chat, echo: true }, "echo"],
    ];
    for (const [route, body, param] of cases) {
      const r = await post<ErrorBody>(route, body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.json.error).toMatchObject({ type: "invalid_request_error", param });
      expect(r.json.error.message.length).toBeGreaterThan(10);
    }
  }, 30_000);
});
