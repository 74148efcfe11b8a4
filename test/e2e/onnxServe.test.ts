import { execa, type ResultPromise } from "execa";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it, type TestContext } from "vitest";
import { BIN, sandbox } from "../helpers/cli.js";
import { onnxFixture } from "../helpers/onnxFixture.js";
import { listening } from "../helpers/serveProcess.js";

/**
 * `slm serve` with tiny-arith's q4 ONNX export, answering the official `openai` npm client: chat (whole and
 * streamed), raw completions (whole and streamed), the model list, and the refusal of embeddings (a causal
 * LM export has none).
 */
const SLOW = 300_000;
const user = (content: string) => [{ role: "user" as const, content }];

describe("slm serve with an ONNX model", () => {
  let skip: string | undefined;
  let proc: ResultPromise<{ reject: false }> | undefined;
  let client: OpenAI;
  let model = "";
  let stderr: () => string = () => "";

  beforeAll(async () => {
    const f = await onnxFixture();
    skip = f.skip;
    if (skip) {
      process.stderr.write(`[tests] skipping slm serve on ONNX: ${skip}\n`);
      return;
    }
    const sb = sandbox();
    // --verbose: the load line naming the variant (a load is quiet otherwise, as llama.cpp's is).
    proc = execa("node", [BIN, "serve", `${f.dir!}:q4`, "--port", "0", "--threads", "1", "--parallel", "2", "--verbose"], { env: sb.env, extendEnv: true, reject: false });
    const up = await listening(proc, 60_000);
    stderr = up.stderr;
    client = new OpenAI({ baseURL: `${up.url}/v1`, apiKey: "none", maxRetries: 0, timeout: 60_000 });
    // The served model first, then the names a client may also load on demand (the catalog's).
    for await (const m of client.models.list()) {
      model = m.id;
      break;
    }
  }, SLOW);
  afterAll(async () => {
    if (!proc) return;
    proc.kill("SIGINT");
    await proc;
  });
  const need = (ctx: TestContext) => {
    if (skip) ctx.skip(skip);
  };

  it("serves the folder under its name, the variant asked for loaded", (ctx) => {
    need(ctx);
    expect(model, stderr()).toBe("tiny-arith-onnx");
    expect(stderr()).toMatch(/q4, onnx\/model_q4\.onnx/);
  });

  it("answers a chat completion at temperature 0, with usage and finish_reason", async (ctx) => {
    need(ctx);
    const r = await client.chat.completions.create({ model, messages: user("12+34"), temperature: 0 });
    expect(r.choices[0]!.message.content).toBe("46");
    expect(r.choices[0]!.finish_reason).toBe("stop");
    expect(r.usage!.completion_tokens).toBeGreaterThan(0);
    expect(r.usage!.prompt_tokens).toBeGreaterThan(3);
  });

  it("streams a chat completion, the chunks adding up to the same answer", async (ctx) => {
    need(ctx);
    let text = "";
    let finish: string | null | undefined;
    const stream = await client.chat.completions.create({ model, messages: user("57+23"), temperature: 0, stream: true });
    for await (const c of stream) {
      text += c.choices[0]?.delta.content ?? "";
      finish = c.choices[0]?.finish_reason ?? finish;
    }
    expect(text).toBe("80");
    expect(finish).toBe("stop");
  });

  it("answers two chats at once on its two slots", async (ctx) => {
    need(ctx);
    const [a, b] = await Promise.all([
      client.chat.completions.create({ model, messages: user("13+54"), temperature: 0 }),
      client.chat.completions.create({ model, messages: user("26+16"), temperature: 0 }),
    ]);
    expect([a.choices[0]!.message.content, b.choices[0]!.message.content]).toEqual(["67", "42"]);
  });

  it("completes a raw prompt (no template), whole and streamed alike; stops at max_tokens", async (ctx) => {
    need(ctx);
    const r = await client.completions.create({ model, prompt: "<|user|>12+34<|assistant|>", temperature: 0 });
    expect(r.choices[0]!.text).toBe("46");
    let streamed = "";
    for await (const c of await client.completions.create({ model, prompt: "<|user|>12+34<|assistant|>", temperature: 0, stream: true })) streamed += c.choices[0]?.text ?? "";
    expect(streamed).toBe("46");
    const short = await client.completions.create({ model, prompt: "<|user|>12+34<|assistant|>", temperature: 0, max_tokens: 1 });
    expect(short.choices[0]!.finish_reason).toBe("length");
    expect(short.usage!.completion_tokens).toBe(1);
  });

  it("logprobs: chat's and the legacy shape, the end token last, and the same values echoed from the prompt's rows", async (ctx) => {
    need(ctx);
    const chat = await client.chat.completions.create({ model, messages: user("12+34"), temperature: 0, logprobs: true, top_logprobs: 2 });
    const content = chat.choices[0]!.logprobs!.content!;
    expect(content.map((t) => t.token).join("")).toBe("46");
    expect(content[0]!.top_logprobs[0]!.token).toBe("4");
    const prompt = "<|user|>12+34<|assistant|>";
    const gen = await client.completions.create({ model, prompt, temperature: 0, logprobs: 2 });
    const lp = gen.choices[0]!.logprobs!;
    expect(lp.tokens).toEqual(["4", "6", "</s>"]);
    // Read again from the rows of one batched evaluation of the prompt and the answer (echo), not from sampling.
    const echo = await client.completions.create({ model, prompt: `${prompt}46</s>`, echo: true, max_tokens: 0, logprobs: 2 });
    const back = echo.choices[0]!.logprobs!;
    expect(back.token_logprobs![0]).toBeNull();
    back.token_logprobs!.slice(-3).forEach((x, i) => expect(x).toBeCloseTo(lp.token_logprobs![i]!, 4));
    const [echoed, sampled] = [back.top_logprobs!.at(-3)!, lp.top_logprobs![0]!];
    expect(Object.keys(echoed)).toEqual(Object.keys(sampled));
    for (const k of Object.keys(sampled)) expect(echoed[k]).toBeCloseTo(sampled[k]!, 4);
  });

  it("refuses embeddings with a 400 (the export has none), and keeps serving", async (ctx) => {
    need(ctx);
    await expect(client.embeddings.create({ model, input: "12+34" })).rejects.toMatchObject({ status: 400 });
    const r = await client.chat.completions.create({ model, messages: user("12+34"), temperature: 0 });
    expect(r.choices[0]!.message.content).toBe("46");
  });
});
