import { mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa, type ResultPromise } from "execa";
import OpenAI from "openai";
import type { ChatCompletionMessageParam, ChatCompletionTool } from "openai/resources/chat/completions";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BIN, ROOT, register, sandbox } from "../helpers/cli.js";
import { listening } from "../helpers/serveProcess.js";

/**
 * Tool calls through `slm serve` with the official `openai` client, against a model that really calls
 * tools: tiny-arith with a chat template that has a compact `<tool_call>name{arguments}</tool_call>` syntax and a LoRA adapter
 * trained (test/fixtures/tiny-arith-tools/make.mjs, with `slm finetune`) to answer "a*b" with a call to
 * `multiply` and then to answer with the tool's result. The questions here are held out of its training.
 */

const TOOLS_DIR = path.join(ROOT, "test", "fixtures", "tiny-arith-tools");
const BASE = path.join(TOOLS_DIR, "gguf", "tiny-arith-tools-f16.gguf");
const ADAPTER = path.join(TOOLS_DIR, "gguf", "tools-lora.gguf");
const HELD_OUT = readFileSync(path.join(TOOLS_DIR, "data", "eval.jsonl"), "utf8")
  .trim()
  .split("\n")
  .map((l) => JSON.parse(l) as { question: string; a: number; b: number; product: number });

/**
 * Held-out questions of the round trip, and how many of them must come out right. Measured with the committed
 * adapter (its README: measure.mjs on all 200 held-out questions, and this test's loop on these 40), with a
 * margin below what it does, since greedy decoding on another CPU may flip a borderline digit or two.
 */
const ROUND_TRIPS = 40;
const CALLS = 38; // measured 39/40 here, 199/200 by measure.mjs (a well-formed call, whatever its numbers)
const EXACT_CALLS = 27; // measured 31/40 here, 159/200 by measure.mjs
const EXACT_ANSWERS = 12; // measured 17/40 here, 87/200 by measure.mjs

const tools: ChatCompletionTool[] = [
  {
    type: "function",
    function: {
      name: "multiply",
      description: "Multiply two whole numbers",
      parameters: { type: "object", properties: { a: { type: "integer" }, b: { type: "integer" } }, required: ["a", "b"] },
    },
  },
];

describe("slm serve: tool calls", () => {
  const sb = sandbox();
  let proc: ResultPromise<{ reject: false }>;
  let url: string;
  let client: OpenAI;

  beforeAll(async () => {
    // The trained fine-tune, the same base without its adapter, and the fixture (whose template has no tool syntax).
    register(sb, [
      { name: "arith-tools", path: BASE, adapters: [{ path: ADAPTER, scale: 1 }] },
      { name: "arith-tools-base", path: BASE },
    ]);
    proc = execa("node", [BIN, "serve", "arith-tools", "arith-tools-base", "tiny-arith", "--port", "0", "--threads", "1"], { env: sb.env, extendEnv: true, reject: false });
    url = (await listening(proc, 60_000)).url;
    client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0, timeout: 30_000 });
  }, 70_000);

  afterAll(async () => {
    proc?.kill("SIGINT");
    await proc;
  });

  it("round trip on held-out questions: a multiply call with the question's numbers, then the tool's result as the answer", async () => {
    let calls = 0;
    let exactCalls = 0;
    let exactAnswers = 0;
    for (const q of HELD_OUT.slice(0, ROUND_TRIPS)) {
      const messages: ChatCompletionMessageParam[] = [{ role: "user", content: q.question }];
      const first = await client.chat.completions.create({ model: "arith-tools", messages, tools, temperature: 0 });
      const choice = first.choices[0]!;
      // A call the model misspells comes back as text (1 of the 200 held-out questions, 6*5, is among these 40).
      if (choice.finish_reason !== "tool_calls") continue;
      calls++;
      expect(choice.message.content).toBeNull();
      expect(choice.message.tool_calls).toHaveLength(1);
      const call = choice.message.tool_calls![0]!;
      if (call.type !== "function") throw new Error("not a function call");
      expect(call.id).toMatch(/^call_\w+$/);
      expect(call.function.name).toBe("multiply");
      // The arguments as the model wrote them, in its template's style, with nothing after them.
      expect(call.function.arguments).toMatch(/^\{"a": \d+, "b": \d+\}$/);
      const args = JSON.parse(call.function.arguments) as { a: number; b: number };
      if (args.a === q.a && args.b === q.b) exactCalls++;

      // The tool runs on the model's own arguments, as a client's loop would; the answer must be its result.
      const result = String(args.a * args.b);
      messages.push(choice.message, { role: "tool", tool_call_id: call.id, content: result });
      const second = await client.chat.completions.create({ model: "arith-tools", messages, tools, temperature: 0 });
      expect(second.choices[0]!.finish_reason).toBe("stop");
      expect(second.choices[0]!.message.tool_calls).toBeUndefined();
      expect(second.choices[0]!.message.content).toMatch(/^\d+$/);
      if (second.choices[0]!.message.content === result) exactAnswers++;
    }
    console.log(`tool round trips: ${calls}/${ROUND_TRIPS} calls, ${exactCalls}/${ROUND_TRIPS} exact calls, ${exactAnswers}/${ROUND_TRIPS} answers equal to the tool's result`);
    expect(calls).toBeGreaterThanOrEqual(CALLS);
    expect(exactCalls).toBeGreaterThanOrEqual(EXACT_CALLS);
    expect(exactAnswers).toBeGreaterThanOrEqual(EXACT_ANSWERS);
  });

  it("streamed: the client's stream helper assembles from the deltas the same call and answer as without streaming", async () => {
    const q = HELD_OUT[0]!;
    const messages: ChatCompletionMessageParam[] = [{ role: "user", content: q.question }];
    const whole = (await client.chat.completions.create({ model: "arith-tools", messages, tools, temperature: 0 })).choices[0]!.message.tool_calls![0]!;
    const stream = client.chat.completions.stream({ model: "arith-tools", messages, tools, temperature: 0 });
    let deltas = 0;
    stream.on("chunk", (c) => (deltas += c.choices[0]?.delta.tool_calls?.length ?? 0));
    const first = await stream.finalChatCompletion();
    expect(deltas).toBeGreaterThan(1); // the arguments arrive in pieces
    expect(first.choices[0]!.finish_reason).toBe("tool_calls");
    const call = first.choices[0]!.message.tool_calls![0]!;
    if (call.type !== "function" || whole.type !== "function") throw new Error("not a function call");
    expect(call.id).toMatch(/^call_\w+$/);
    expect(call.function).toEqual(whole.function);

    const { a, b } = JSON.parse(call.function.arguments) as { a: number; b: number };
    messages.push(first.choices[0]!.message, { role: "tool", tool_call_id: call.id, content: String(a * b) });
    const answer = (await client.chat.completions.create({ model: "arith-tools", messages, tools, temperature: 0 })).choices[0]!.message.content;
    const second = client.chat.completions.stream({ model: "arith-tools", messages, tools, temperature: 0 });
    expect(await second.finalContent()).toBe(answer);
  });

  it("the openai client's runTools loop runs the function the model calls and ends with the model's answer", async () => {
    const ran: { a: number; b: number }[] = [];
    const runner = client.chat.completions.runTools({
      model: "arith-tools",
      temperature: 0,
      messages: [{ role: "user", content: HELD_OUT[1]!.question }],
      tools: [
        {
          type: "function",
          function: {
            name: "multiply",
            parameters: tools[0]!.type === "function" ? tools[0]!.function.parameters! : {},
            parse: JSON.parse,
            function: (args: { a: number; b: number }) => {
              ran.push(args);
              return args.a * args.b;
            },
          },
        },
      ],
    });
    const content = await runner.finalContent();
    expect(ran).toHaveLength(1);
    expect(runner.messages.map((m) => m.role)).toEqual(["user", "assistant", "tool", "assistant"]);
    expect(content).toMatch(/^\d+$/);
  });

  it("tool_choice: auto answers additions directly, none never calls, required and a named function always call", async () => {
    const add = await client.chat.completions.create({ model: "arith-tools", messages: [{ role: "user", content: "25+19" }], tools, temperature: 0 });
    // Answered in text, not with a call; the sum itself is right for only 7 % of additions (the README).
    expect(add.choices[0]!.message.content).toMatch(/^\d+$/);
    expect(add.choices[0]!.message.tool_calls).toBeUndefined();

    const q = HELD_OUT[5]!;
    const none = await client.chat.completions.create({ model: "arith-tools", messages: [{ role: "user", content: q.question }], tools, tool_choice: "none", temperature: 0, max_tokens: 8 });
    expect(none.choices[0]!.message.tool_calls).toBeUndefined();
    expect(none.choices[0]!.finish_reason).not.toBe("tool_calls");

    for (const tool_choice of ["required", { type: "function", function: { name: "multiply" } }] as const) {
      const r = await client.chat.completions.create({ model: "arith-tools", messages: [{ role: "user", content: "25+19" }], tools, tool_choice, temperature: 0 });
      expect(r.choices[0]!.finish_reason).toBe("tool_calls");
      const call = r.choices[0]!.message.tool_calls![0]!;
      if (call.type !== "function") throw new Error("not a function call");
      expect(call.function.name).toBe("multiply");
      expect(Object.keys(JSON.parse(call.function.arguments) as object).sort()).toEqual(["a", "b"]);
    }
  });

  it("a call the model formats badly, or one cut off by max_tokens, is a clear 500 in OpenAI's shape, streamed or not", async () => {
    // Without the adapter the model never learnt the syntax: forced to call, it writes numbers no schema takes.
    const bad = { model: "arith-tools-base", messages: [{ role: "user" as const, content: "12*34" }], tools, tool_choice: "required" as const, temperature: 0 };
    const err = await client.chat.completions.create(bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.InternalServerError);
    expect((err as InstanceType<typeof OpenAI.APIError>).message).toMatch(/model's call of multiply is not valid/);
    const streamed = await (async () => {
      for await (const _ of await client.chat.completions.create({ ...bad, stream: true })) void _;
    })().catch((e: unknown) => e);
    expect(String(streamed)).toMatch(/model's call of multiply is not valid/);

    // 25 tokens end inside the call's arguments (`<tool_call>multiply{"a": ` is 24 of this vocabulary's tokens).
    const cut = await client.chat.completions.create({ model: "arith-tools", messages: [{ role: "user", content: HELD_OUT[6]!.question }], tools, max_tokens: 25, temperature: 0 }).catch((e: unknown) => e);
    expect(cut).toBeInstanceOf(OpenAI.InternalServerError);
    expect((cut as InstanceType<typeof OpenAI.APIError>).message).toMatch(/tool call was cut off \(max_tokens reached/);
  });

  it("a model whose template has no tool syntax: 400 with tools, answered normally with tool_choice none", async () => {
    const err = await client.chat.completions.create({ model: "tiny-arith", messages: [{ role: "user", content: "12+34" }], tools }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(err).toMatchObject({ status: 400, param: "tools", code: "tools_not_supported" });
    expect((err as Error).message).toMatch(/tiny-arith cannot call tools: its chat template has no syntax for tool calls/);
    const none = await client.chat.completions.create({ model: "tiny-arith", messages: [{ role: "user", content: "12+34" }], tools, tool_choice: "none", temperature: 0 });
    expect(none.choices[0]!.message.content).toBe("46");
  });

  it("bad tool fields and conversations are 400s naming the field", async () => {
    const cases: [object, string, RegExp][] = [
      [{ tools: [{ type: "function", function: { name: "bad name" } }] }, "tools[0].function.name", /letters, digits/],
      [{ tools, tool_choice: { type: "function", function: { name: "add" } } }, "tool_choice", /add, which is not in tools/],
      [{ tool_choice: "required" }, "tool_choice", /needs tools/],
      [{ tools, parallel_tool_calls: "yes" }, "parallel_tool_calls", /true or false/],
      [{ functions: [{ name: "multiply" }] }, "functions", /legacy functions field is not supported: send tools/],
      [{ messages: [{ role: "user", content: "1*2" }, { role: "tool", tool_call_id: "call_x", content: "2" }] }, "messages[1].tool_call_id", /did not make/],
      [{ messages: [{ role: "user", content: "1*2" }, { role: "assistant", content: null, tool_calls: [{ id: "c1", type: "function", function: { name: "multiply", arguments: "{}" } }] }] }, "messages", /c1 \(multiply\) has no role "tool" message/],
    ];
    for (const [fields, param, message] of cases) {
      const r = await fetch(`${url}/v1/chat/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ model: "arith-tools", messages: [{ role: "user", content: "1*2" }], ...fields }) });
      const body = (await r.json()) as { error: { message: string; param: string } };
      expect(r.status, JSON.stringify(fields)).toBe(400);
      expect(body.error.param).toBe(param);
      expect(body.error.message).toMatch(message);
    }
  });

  it("docs/serve.md's tools example runs as shown: the call, then the model's answer", async () => {
    const doc = readFileSync(path.join(ROOT, "docs", "serve.md"), "utf8");
    const code = /## Tool calls[\s\S]*?```js\n([\s\S]*?)```/.exec(doc)?.[1];
    expect(code).toBeDefined();
    const dir = mkdtempSync(path.join(tmpdir(), "slm-tools-doc-"));
    // The example names the server as the docs start it; here it is this test's server and registered name.
    writeFileSync(path.join(dir, "example.mjs"), code!.replace("http://127.0.0.1:8080/v1", `${url}/v1`).replaceAll('"tiny-arith-tools-f16.gguf"', '"arith-tools"'));
    symlinkSync(path.join(ROOT, "node_modules"), path.join(dir, "node_modules"));
    const r = await execa("node", [path.join(dir, "example.mjs")], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout.trim()).toMatch(/^multiply \{"a": \d+, "b": \d+\} \d+$/);
  });
});
