import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa, type ResultPromise } from "execa";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BIN, FIXTURE, type Sandbox, lastJson, sandbox, slm } from "../helpers/cli.js";
import { tokenizerPythonForTests } from "../helpers/python.js";
import { listening } from "../helpers/serveProcess.js";

const LORA = path.join(FIXTURE, "gguf", "lora-sub-f32.gguf");
const KEY = "sk-test-7f3a9c2e";

/** Token counts from the fixture's Hugging Face tokenizer: the chat template's, and plain tokenizer(text)'s. */
const HF_COUNTS = `
import json, sys
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
q = json.loads(sys.argv[2])
def templated(text):
    ids = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True)
    return len(ids["input_ids"] if hasattr(ids, "keys") else ids)
print(json.dumps({"chat": [templated(t) for t in q["chat"]], "raw": [len(tok(t).input_ids) for t in q["raw"]]}))
`;

interface Running {
  url: string;
  proc: ResultPromise<{ reject: false }>;
  stderr(): string;
}

/**
 * Starts the built `slm serve --port 0 …` and waits for its startup line. One thread: on a shared
 * 2-core machine two threads stall whenever another process takes a core (DESIGN §3), and these tests
 * check behaviour, not speed.
 */
async function serve(args: string[], sb: Sandbox, env: Record<string, string> = {}): Promise<Running> {
  const proc = execa("node", [BIN, "serve", "--port", "0", "--threads", "1", ...args], { env: { ...sb.env, ...env }, extendEnv: true, reject: false });
  const { url, stderr } = await listening(proc, 60_000);
  return { url, proc, stderr };
}

async function stop(s: Running | undefined): Promise<number | undefined> {
  if (!s) return undefined;
  s.proc.kill("SIGINT");
  return (await s.proc).exitCode;
}

interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

interface Health {
  status: string;
  models?: { id: string; busy: number; queued: number; parallel: number; contextSize?: number }[];
  requests?: { requests: number; active: number; aborted: number; failed: number };
}

async function post(url: string, body: string, headers: Record<string, string> = {}): Promise<{ status: number; json: ErrorBody }> {
  const r = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json", Authorization: `Bearer ${KEY}`, ...headers }, body });
  return { status: r.status, json: (await r.json()) as ErrorBody };
}

const user = (content: string) => [{ role: "user" as const, content }];

describe("slm serve", () => {
  const sb = sandbox();
  let main: Running;
  let client: OpenAI;

  beforeAll(async () => {
    // The key comes from the environment, as the docs recommend; --ctx past the model's 256 trained tokens
    // is capped (with a warning) instead of allocating a cache for positions the model never saw.
    main = await serve(["tiny-arith", "--parallel", "2", "--ctx", "999999"], sb, { SLM_API_KEY: KEY });
    client = new OpenAI({ baseURL: `${main.url}/v1`, apiKey: KEY, maxRetries: 0, timeout: 60_000 });
  });

  afterAll(async () => {
    await stop(main);
  });

  it("binds to 127.0.0.1 and never prints the API key", () => {
    expect(main.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(main.stderr()).toMatch(/API key required/);
    expect(main.stderr()).not.toContain(KEY);
  });

  it("lists models and answers /health", async () => {
    const ids: string[] = [];
    for await (const m of client.models.list()) ids.push(m.id);
    expect(ids).toContain("tiny-arith");
    const health = (await (await fetch(`${main.url}/health`, { headers: { Authorization: `Bearer ${KEY}` } })).json()) as Health;
    expect(health.status).toBe("ok");
    expect(health.models).toContainEqual(expect.objectContaining({ id: "tiny-arith", parallel: 2, contextSize: 256 }));
    expect(main.stderr()).toMatch(/warn: --ctx 999999 is more than the model was trained on: using its 256 tokens/);
    // Without the key: alive, but no details.
    expect(await (await fetch(`${main.url}/health`)).json()).toEqual({ status: "ok" });
  });

  it("answers a chat completion at temperature 0, with usage and finish_reason", async () => {
    const r = await client.chat.completions.create({ model: "tiny-arith", messages: user("12+34"), temperature: 0 });
    expect(r.object).toBe("chat.completion");
    expect(r.choices[0]!.message).toMatchObject({ role: "assistant", content: "46" });
    expect(r.choices[0]!.finish_reason).toBe("stop");
    // <s><|user|>1 2 + 3 4<|assistant|>: 8 tokens; "4", "6" and the end token.
    expect(r.usage).toEqual({ prompt_tokens: 8, completion_tokens: 3, total_tokens: 11 });
  });

  it("streams a chat completion as SSE chunks, with usage when asked", async () => {
    const stream = await client.chat.completions.create({ model: "tiny-arith", messages: user("12+34"), temperature: 0, stream: true, stream_options: { include_usage: true } });
    let text = "";
    const finishes: (string | null)[] = [];
    let usage: OpenAI.CompletionUsage | undefined | null;
    let chunks = 0;
    for await (const c of stream) {
      chunks++;
      expect(c.object).toBe("chat.completion.chunk");
      for (const ch of c.choices) {
        text += ch.delta.content ?? "";
        finishes.push(ch.finish_reason);
      }
      if (c.usage) usage = c.usage;
    }
    expect(text).toBe("46");
    expect(chunks).toBeGreaterThanOrEqual(3);
    expect(finishes.at(-1)).toBe("stop");
    expect(usage).toMatchObject({ prompt_tokens: 8, completion_tokens: 3 });
  });

  it("builds multi-turn conversations from all messages", async () => {
    const single = await client.chat.completions.create({ model: "tiny-arith", messages: user("12+34"), temperature: 0 });
    const multi = await client.chat.completions.create({
      model: "tiny-arith",
      messages: [
        { role: "user", content: "11+11" },
        { role: "assistant", content: "22" },
        { role: "user", content: "12+34" },
      ],
      temperature: 0,
    });
    // <s> <|user|>11+11 <|assistant|>22</s> <|user|>12+34 <|assistant|>: the earlier turn is in the prompt…
    expect(multi.usage?.prompt_tokens).toBe(18);
    // …and reaches the model, which was trained on single turns only and so answers differently.
    expect(multi.choices[0]!.message.content).not.toBe(single.choices[0]!.message.content);
  });

  it("never loads a file a request names by path, and answers the same whether or not it exists", async () => {
    const file = path.join(FIXTURE, "gguf", "tiny-arith-f32.gguf");
    const refs = [file, "/etc/nonexistent.gguf", "/etc/passwd", "../../../x.gguf", `${path.relative(process.cwd(), file)}`, "./test"];
    const answers = await Promise.all(refs.map(async (ref) => ({ ref, ...(await post(`${main.url}/v1/chat/completions`, JSON.stringify({ model: ref, messages: user("30+11") }))) })));
    for (const a of answers) {
      expect(a.status, a.ref).toBe(404);
      expect(a.json.error.code).toBe("model_not_found");
      expect(a.json.error.message.replace(a.ref, "REF"), a.ref).toBe(answers[0]!.json.error.message.replace(answers[0]!.ref, "REF"));
    }
    // Nothing about where files are: the message names only what the client sent.
    expect(answers[0]!.json.error.message.replace(file, "")).not.toContain(FIXTURE);
    // GET /v1/models/{id} and embeddings follow the same rule; nothing was loaded.
    const get = await fetch(`${main.url}/v1/models/${encodeURIComponent(file)}`, { headers: { Authorization: `Bearer ${KEY}` } });
    expect(get.status).toBe(404);
    expect((await post(`${main.url}/v1/embeddings`, JSON.stringify({ model: file, input: "1" }))).status).toBe(404);
    const health = (await (await fetch(`${main.url}/health`, { headers: { Authorization: `Bearer ${KEY}` } })).json()) as Health;
    expect(health.models?.map((m) => m.id)).toEqual(["tiny-arith"]);
  });

  it("suggests the nearest served model for an unknown name", async () => {
    const r = await post(`${main.url}/v1/chat/completions`, JSON.stringify({ model: "tiny-arth", messages: user("1+1") }));
    expect(r.status).toBe(404);
    expect(r.json.error).toMatchObject({ code: "model_not_found", param: "model" });
    expect(r.json.error.message).toMatch(/Did you mean "tiny-arith"\?/);
  });

  it("stops at a stop string and at max_tokens", async () => {
    const stopped = await client.chat.completions.create({ model: "tiny-arith", messages: user("12+34"), temperature: 0, stop: ["6"] });
    expect(stopped.choices[0]!.message.content).toBe("4");
    expect(stopped.choices[0]!.finish_reason).toBe("stop");
    const short = await client.chat.completions.create({ model: "tiny-arith", messages: user("12+34"), temperature: 0, max_completion_tokens: 1 });
    expect(short.choices[0]!.message.content).toBe("4");
    expect(short.choices[0]!.finish_reason).toBe("length");
    expect(short.usage?.completion_tokens).toBe(1);
  });

  it("completes a raw prompt, as `slm run --raw` does, streaming or not", async () => {
    const r = await client.completions.create({ model: "tiny-arith", prompt: "12+34", temperature: 0, max_tokens: 4 });
    expect(r.object).toBe("text_completion");
    expect(r.choices[0]!.finish_reason).toBe("length");
    expect(r.usage).toMatchObject({ completion_tokens: 4 });
    // No chat template: BOS and the five characters.
    expect(r.usage?.prompt_tokens).toBe(6);
    const cli = await slm(["run", "tiny-arith", "12+34", "--raw", "-n", "4", "-t", "0", "--threads", "1"], sb);
    expect(r.choices[0]!.text).toBe(cli.stdout.trim());
    let streamed = "";
    for await (const c of await client.completions.create({ model: "tiny-arith", prompt: "12+34", temperature: 0, max_tokens: 4, stream: true })) streamed += c.choices[0]?.text ?? "";
    expect(streamed).toBe(r.choices[0]!.text);
  });

  it("parses the model's control tokens in a raw prompt, as llama-server does", async () => {
    // The chat format written out: 8 tokens, as the model's own tokenizer makes them, and the right sum
    // (as plain text it was 26 tokens and the answer 64).
    const r = await client.completions.create({ model: "tiny-arith", prompt: "<|user|>12+34<|assistant|>", temperature: 0 });
    expect(r.choices[0]!.text).toBe("46");
    expect(r.usage?.prompt_tokens).toBe(8);
  });

  it("takes token ids and batches of prompts, one choice per prompt with its index", async () => {
    // <|user|> 1 2 + 3 4 <|assistant|>: BOS is put in front when the ids do not start with it.
    const ids = [3, 281, 283, 282, 284, 285, 4];
    for (const prompt of [ids, [1, ...ids]]) {
      const r = await client.completions.create({ model: "tiny-arith", prompt, temperature: 0 });
      expect(r.choices).toEqual([expect.objectContaining({ index: 0, text: "46" })]);
      expect(r.usage?.prompt_tokens).toBe(8);
    }
    const texts = ["<|user|>12+34<|assistant|>", "<|user|>20+22<|assistant|>", "<|user|>33+44<|assistant|>"];
    const batch = await client.completions.create({ model: "tiny-arith", prompt: texts, temperature: 0 });
    expect(batch.choices.map((c) => [c.index, c.text, c.finish_reason])).toEqual([
      [0, "46", "stop"],
      [1, "42", "stop"],
      [2, "77", "stop"],
    ]);
    expect(batch.usage).toMatchObject({ prompt_tokens: 24, completion_tokens: 9 });
    const tokenBatch = await client.completions.create({ model: "tiny-arith", prompt: [ids, [3, 284, 284, 282, 284, 284, 4]], temperature: 0 });
    // …and 3 3 + 3 3
    expect(tokenBatch.choices.map((c) => c.text)).toEqual(["46", "66"]);
    // Streamed: each chunk says which prompt it belongs to.
    const streamed = ["", "", ""];
    const finished: number[] = [];
    for await (const c of await client.completions.create({ model: "tiny-arith", prompt: texts, temperature: 0, stream: true })) {
      for (const ch of c.choices) {
        streamed[ch.index] += ch.text;
        if (ch.finish_reason) finished.push(ch.index);
      }
    }
    expect(streamed).toEqual(["46", "42", "77"]);
    expect(finished.sort()).toEqual([0, 1, 2]);
    // Ids outside the vocabulary, and malformed batches, are the client's error.
    const bad = await post(`${main.url}/v1/completions`, JSON.stringify({ model: "tiny-arith", prompt: [3, 999999] }));
    expect(bad.status).toBe(400);
    expect(bad.json.error.param).toBe("prompt");
    for (const prompt of [[], ["ok", 5], [[1, 2], []], [1.5], ""]) {
      const r = await post(`${main.url}/v1/completions`, JSON.stringify({ model: "tiny-arith", prompt }));
      expect(r.status, JSON.stringify(prompt)).toBe(400);
    }
  });

  it("counts prompt tokens as slm run does, and as the Hugging Face tokenizer does", async (ctx) => {
    for (const raw of [false, true]) {
      const cli = await slm(["run", "tiny-arith", "12+34", "-t", "0", "-n", "1", "--json", ...(raw ? ["--raw"] : [])], sb);
      const served = raw
        ? (await client.completions.create({ model: "tiny-arith", prompt: "12+34", temperature: 0, max_tokens: 1 })).usage
        : (await client.chat.completions.create({ model: "tiny-arith", messages: user("12+34"), temperature: 0, max_tokens: 1 })).usage;
      expect((lastJson(cli.stdout).data as { promptTokens: number }).promptTokens, raw ? "raw" : "chat").toBe(served?.prompt_tokens);
    }
    const { python, skip } = await tokenizerPythonForTests();
    if (!python) return ctx.skip(skip);
    const chat = ["12+34", "7+8", "a b\nc", " 5+5 "];
    const raw = [...chat, "<|user|>12+34<|assistant|>", "<s>99+1</s>"];
    const hf = JSON.parse((await execa(python, ["-c", HF_COUNTS, path.join(FIXTURE, "hf"), JSON.stringify({ chat, raw })])).stdout) as { chat: number[]; raw: number[] };
    const ours = {
      chat: await Promise.all(chat.map(async (q) => (await client.chat.completions.create({ model: "tiny-arith", messages: user(q), temperature: 0, max_tokens: 1 })).usage?.prompt_tokens)),
      raw: await Promise.all(raw.map(async (q) => (await client.completions.create({ model: "tiny-arith", prompt: q, temperature: 0, max_tokens: 1 })).usage?.prompt_tokens)),
    };
    expect(ours).toEqual(hf);
    // Two CLI runs and a Python that imports transformers: a minute on a busy 2-core machine.
  }, 180_000);

  it("follows a JSON schema (response_format json_schema) and json_object", async () => {
    const schema = { type: "object", properties: { answer: { enum: ["yes", "no"] } }, required: ["answer"], additionalProperties: false };
    const r = await client.chat.completions.create({ model: "tiny-arith", messages: user("12+34"), temperature: 0, max_tokens: 60, response_format: { type: "json_schema", json_schema: { name: "yn", schema } } });
    const parsed = JSON.parse(r.choices[0]!.message.content ?? "") as Record<string, unknown>;
    expect(Object.keys(parsed)).toEqual(["answer"]);
    expect(["yes", "no"]).toContain(parsed.answer);
    const plain = await client.chat.completions.create({ model: "tiny-arith", messages: user("12+34"), temperature: 0 });
    expect(plain.choices[0]!.message.content).toBe("46");
    const obj = await client.chat.completions.create({ model: "tiny-arith", messages: user("12+34"), temperature: 0, max_tokens: 20, response_format: { type: "json_object" } });
    expect(obj.choices[0]!.message.content).toMatch(/^\s*\{/);
  });

  it("computes embeddings (base64, as the client asks by default, and float)", async () => {
    const r = await client.embeddings.create({ model: "tiny-arith", input: ["12+34", "hello"] });
    expect(r.data).toHaveLength(2);
    const v = r.data[0]!.embedding;
    expect(v).toHaveLength(256);
    expect(v.every(Number.isFinite)).toBe(true);
    expect(r.usage.prompt_tokens).toBeGreaterThan(0);
    const f = await client.embeddings.create({ model: "tiny-arith", input: "12+34", encoding_format: "float" });
    expect(f.data[0]!.embedding.map((x) => Math.fround(x))).toEqual(v);
  });

  it("rejects a wrong or missing API key with 401", async () => {
    const wrong = new OpenAI({ baseURL: `${main.url}/v1`, apiKey: "sk-wrong", maxRetries: 0 });
    const err = await wrong.chat.completions.create({ model: "tiny-arith", messages: user("1+1") }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((err as InstanceType<typeof OpenAI.AuthenticationError>).status).toBe(401);
    const none = await fetch(`${main.url}/v1/models`);
    expect(none.status).toBe(401);
    expect(((await none.json()) as ErrorBody).error.code).toBe("invalid_api_key");
  });

  it("answers malformed requests with OpenAI-style 4xx errors and keeps serving", async () => {
    const chat = `${main.url}/v1/chat/completions`;
    const ok = { model: "tiny-arith", messages: user("1+1") };
    const bad = await post(chat, "{not json");
    expect(bad.status).toBe(400);
    expect(bad.json.error).toMatchObject({ type: "invalid_request_error", param: null, code: "invalid_json" });
    expect(typeof bad.json.error.message).toBe("string");
    const cases: [object, string][] = [
      [{ model: "tiny-arith", messages: "12+34" }, "messages"],
      [{ model: "tiny-arith", messages: [] }, "messages"],
      [{ model: "tiny-arith", messages: [{ role: "robot", content: "hi" }] }, "messages[0].role"],
      [{ messages: user("1+1") }, "model"],
      [{ ...ok, max_tokens: -5 }, "max_tokens"],
      [{ ...ok, max_tokens: 1.5 }, "max_tokens"],
      [{ ...ok, temperature: "hot" }, "temperature"],
      [{ ...ok, top_p: 7 }, "top_p"],
      [{ ...ok, stop: 42 }, "stop"],
      [{ ...ok, seed: "x" }, "seed"],
      [{ ...ok, stream: "yes" }, "stream"],
      [{ ...ok, n: 3 }, "n"],
      [{ ...ok, response_format: { type: "json_schema", json_schema: {} } }, "response_format"],
    ];
    for (const [body, param] of cases) {
      const r = await post(chat, JSON.stringify(body));
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.json.error.param, JSON.stringify(body)).toBe(param);
    }
    expect((await post(`${main.url}/v1/completions`, JSON.stringify({ model: "tiny-arith", prompt: 12 }))).json.error.param).toBe("prompt");
    expect((await post(`${main.url}/v1/embeddings`, JSON.stringify({ model: "tiny-arith", input: [] }))).json.error.param).toBe("input");
    expect((await post(`${main.url}/v1/completions`, JSON.stringify([1, 2]))).status).toBe(400);
    const unknown = await post(chat, JSON.stringify({ ...ok, model: "no-such-model" }));
    expect(unknown.status).toBe(404);
    expect(unknown.json.error.code).toBe("model_not_found");
    const nothing = await fetch(`${main.url}/v1/nothing`, { headers: { Authorization: `Bearer ${KEY}` } });
    expect(nothing.status).toBe(404);
    // The 404 names every endpoint the server has, the newer ones included.
    const offered = ((await nothing.json()) as { error: { message: string } }).error.message;
    for (const p of ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/tokenize", "/detokenize", "/tokenizer_info", "/health"]) expect(offered).toContain(p);
    const wrongMethod = await fetch(chat, { headers: { Authorization: `Bearer ${KEY}` } });
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get("allow")).toBe("POST");
    const huge = await post(chat, JSON.stringify({ ...ok, pad: "x".repeat(9 * 1024 * 1024) }));
    expect(huge.status).toBe(413);
    const form = await post(chat, "a=1", { "Content-Type": "application/x-www-form-urlencoded" });
    expect(form.status).toBe(415);
    // Still serving, and nothing above counted as a server failure.
    const after = await client.chat.completions.create({ model: "tiny-arith", messages: user("12+34"), temperature: 0 });
    expect(after.choices[0]!.message.content).toBe("46");
    const health = (await (await fetch(`${main.url}/health`, { headers: { Authorization: `Bearer ${KEY}` } })).json()) as Health;
    expect(health.requests?.failed).toBe(0);
  });

  it("serves concurrent requests correctly with --parallel 2: two generate, the rest queue", async () => {
    const sums: [string, string][] = [
      ["12+34", "46"],
      ["20+22", "42"],
      ["33+44", "77"],
      ["45+45", "90"],
    ];
    let peakBusy = 0;
    let peakQueued = 0;
    let polling = true;
    const poll = (async () => {
      while (polling) {
        const h = (await (await fetch(`${main.url}/health`, { headers: { Authorization: `Bearer ${KEY}` } })).json()) as Health;
        const m = h.models?.find((x) => x.id === "tiny-arith");
        peakBusy = Math.max(peakBusy, m?.busy ?? 0);
        peakQueued = Math.max(peakQueued, m?.queued ?? 0);
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    // Long JSON-constrained answers keep the two sequences busy long enough for the others to queue.
    const long = Array.from({ length: 4 }, () => client.chat.completions.create({ model: "tiny-arith", messages: user("12+34"), temperature: 0, max_tokens: 200, response_format: { type: "json_schema", json_schema: { name: "s", schema: { type: "string" } } } }));
    const answers = await Promise.all([...sums.map(([q]) => client.chat.completions.create({ model: "tiny-arith", messages: user(q), temperature: 0 })), ...long]);
    polling = false;
    await poll;
    expect(answers.slice(0, 4).map((a) => a.choices[0]!.message.content)).toEqual(sums.map(([, a]) => a));
    for (const a of answers.slice(4)) expect(a.choices[0]!.finish_reason).toBe("length");
    expect(peakBusy).toBe(2);
    expect(peakQueued).toBeGreaterThan(0);
  });

  it("stops the generation of a client that disconnects mid-stream and frees its sequence", async () => {
    const health = async () => (await (await fetch(`${main.url}/health`, { headers: { Authorization: `Bearer ${KEY}` } })).json()) as Health;
    const before = (await health()).requests!.aborted;
    const ctl = new AbortController();
    // A raw completion held open by a grammar until the context is full (~250 tokens), so it is still
    // running when the client goes away after its first chunk.
    const res = await fetch(`${main.url}/v1/completions`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ model: "tiny-arith", prompt: "12+34", max_tokens: 1500, temperature: 0, stream: true, response_format: { type: "json_schema", json_schema: { schema: { type: "string" } } } }),
      signal: ctl.signal,
    });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toMatch(/^data: /);
    const abortedAt = Date.now();
    ctl.abort();
    let h = await health();
    const busy = (x: Health) => x.models!.find((m) => m.id === "tiny-arith")!.busy;
    while ((h.requests!.aborted === before || busy(h) > 0) && Date.now() - abortedAt < 3000) {
      await new Promise((r) => setTimeout(r, 20));
      h = await health();
    }
    expect(h.requests!.aborted).toBe(before + 1);
    expect(busy(h)).toBe(0);
    const after = await client.chat.completions.create({ model: "tiny-arith", messages: user("12+34"), temperature: 0 });
    expect(after.choices[0]!.message.content).toBe("46");
  });
});

describe("slm serve --allow-paths DIR", () => {
  const sb = sandbox();
  const dir = mkdtempSync(path.join(tmpdir(), "slm-allow-"));
  const outside = path.join(FIXTURE, "gguf", "tiny-arith-f32.gguf");
  let server: Running | undefined;
  let client: OpenAI;

  beforeAll(async () => {
    mkdirSync(path.join(dir, "sub"));
    copyFileSync(path.join(FIXTURE, "gguf", "tiny-arith-f16.gguf"), path.join(dir, "sub", "tiny.gguf"));
    symlinkSync(path.join(dir, "sub", "tiny.gguf"), path.join(dir, "inner.gguf"));
    symlinkSync(outside, path.join(dir, "escape.gguf"));
    symlinkSync("/nonexistent/x.gguf", path.join(dir, "dangling.gguf"));
    writeFileSync(path.join(dir, "notes.gguf"), "not a model");
    // A split model whose second part lies outside DIR: llama.cpp would open it beside the first.
    copyFileSync(path.join(FIXTURE, "gguf", "tiny-arith-f16.gguf"), path.join(dir, "split-00001-of-00002.gguf"));
    symlinkSync(outside, path.join(dir, "split-00002-of-00002.gguf"));
    server = await serve(["--allow-paths", dir], sb);
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
  });

  afterAll(async () => {
    await stop(server);
    rmSync(dir, { recursive: true, force: true });
  });

  it("loads .gguf files inside DIR, by relative or absolute path or through a symlink that stays inside", async () => {
    for (const ref of ["sub/tiny.gguf", path.join(dir, "sub", "tiny.gguf"), "inner.gguf", "./sub/../sub/tiny.gguf"]) {
      const r = await client.chat.completions.create({ model: ref, messages: user("30+11"), temperature: 0 });
      expect(r.choices[0]!.message.content, ref).toBe("41");
    }
    const ids: string[] = [];
    for await (const m of client.models.list()) ids.push(m.id);
    // Listed by its place in DIR, not by where DIR is.
    expect(ids).toContain(path.join("sub", "tiny.gguf"));
    expect(ids.join(" ")).not.toContain(dir);
  });

  it("refuses everything outside DIR with one answer, whether or not the file exists", async () => {
    const refs = [outside, "escape.gguf", "split-00001-of-00002.gguf", "dangling.gguf", "missing.gguf", `../${path.basename(dir)}-nope/x.gguf`, path.relative(dir, outside), "/etc/passwd", "./sub", "/etc/nonexistent.gguf"];
    const answers = [];
    for (const ref of refs) answers.push({ ref, ...(await post(`${server!.url}/v1/completions`, JSON.stringify({ model: ref, prompt: "1" }))) });
    for (const a of answers) {
      expect(a.status, a.ref).toBe(404);
      expect(a.json.error.message.replace(a.ref, "REF"), a.ref).toBe(answers[0]!.json.error.message.replace(answers[0]!.ref, "REF"));
    }
    expect(answers[0]!.json.error.message).not.toContain(dir);
  });

  it("reports a broken file inside DIR without naming where it is", async () => {
    const r = await post(`${server!.url}/v1/completions`, JSON.stringify({ model: "notes.gguf", prompt: "1" }));
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect(r.json.error.message).toMatch(/notes\.gguf/);
    expect(r.json.error.message).not.toContain(dir);
  });

  it("answers a batch of more prompts than --parallel (1): each prompt gives its sequence back when done", async () => {
    const prompts = ["<|user|>12+34<|assistant|>", "<|user|>20+22<|assistant|>", "<|user|>33+44<|assistant|>"];
    const r = await client.completions.create({ model: "tiny-arith", prompt: prompts, temperature: 0 }, { timeout: 30_000 });
    expect(r.choices.map((c) => c.text)).toEqual(["46", "42", "77"]);
  });

  it("refuses a DIR that does not exist", async () => {
    const r = await slm(["serve", "--port", "0", "--allow-paths", path.join(dir, "nope")], sb);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/--allow-paths/);
  });
});

describe("slm serve --lora, and shutdown", () => {
  const sb = sandbox();
  let server: Running | undefined;

  afterAll(async () => {
    await stop(server);
  });

  it("applies --lora to the models it serves: subtraction instead of addition", async () => {
    // No model named: it loads on the first request.
    server = await serve(["--lora", LORA, "--idle-timeout", "1s"], sb);
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
    const r = await client.chat.completions.create({ model: "tiny-arith", messages: user("57-23"), temperature: 0 });
    expect(r.choices[0]!.message.content).toBe("34");
  });

  it("unloads an idle model after --idle-timeout and loads it again on the next request", async () => {
    const health = async () => (await (await fetch(`${server!.url}/health`)).json()) as Health;
    expect((await health()).models?.map((m) => m.id)).toEqual(["tiny-arith"]);
    const t0 = Date.now();
    while ((await health()).models!.length > 0 && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 100));
    expect((await health()).models).toEqual([]);
    const client = new OpenAI({ baseURL: `${server!.url}/v1`, apiKey: "unused", maxRetries: 0 });
    const r = await client.chat.completions.create({ model: "tiny-arith", messages: user("57-23"), temperature: 0 });
    expect(r.choices[0]!.message.content).toBe("34");
  });

  it("exits 0 on SIGINT and stops listening", async () => {
    const url = server!.url;
    const code = await stop(server);
    server = undefined;
    expect(code).toBe(0);
    await expect(fetch(`${url}/health`)).rejects.toThrow();
  });
});
