import { describe, expect, it } from "vitest";
import { callOpening } from "../../src/backends/llama/tools.js";
import { ToolCallShaper } from "../../src/backends/serve/tools.js";

describe("tool calls", () => {
  it("finds the opening of each template family's call syntax, to catch a call the model began in its own way", () => {
    expect(callOpening('<tool_call>{"name": "')).toBe("<tool_call>");
    expect(callOpening('\n<tool_call>\n{"name": "')).toBe("<tool_call>");
    expect(callOpening("<function=")).toBe("<function=");
    expect(callOpening("[TOOL_CALLS]")).toBe("[TOOL_CALLS]");
    expect(callOpening('{"')).toBeUndefined();
  });

  it("gives a call the same id in its stream deltas and in the message, the first delta with the id, type and name", () => {
    const s = new ToolCallShaper();
    const d0 = s.delta({ index: 0, name: "multiply", arguments: '{"a"' });
    const d1 = s.delta({ index: 0, name: "multiply", arguments: ": 1}" });
    expect(d0).toMatchObject({ index: 0, type: "function", function: { name: "multiply", arguments: '{"a"' } });
    expect(d1).toEqual({ index: 0, function: { arguments: ": 1}" } });
    const [m] = s.message([{ name: "multiply", arguments: '{"a": 1}' }]);
    expect(m).toEqual({ id: d0.id, type: "function", function: { name: "multiply", arguments: '{"a": 1}' } });
    expect(d0.id).toMatch(/^call_[0-9a-f]{24}$/);
  });
});

describe("which chat templates can call tools", () => {
  it("node-llama-cpp's wrappers with a call syntax of the model's own, and a Jinja template it reads one out of", async () => {
    const { readFileSync } = await import("node:fs");
    const { ChatMLChatWrapper, GeneralChatWrapper, JinjaTemplateChatWrapper, Llama2ChatWrapper, Llama3_1ChatWrapper, MistralChatWrapper, QwenChatWrapper } = await import("node-llama-cpp");
    const { hasToolSyntax } = await import("../../src/backends/llama/tools.js");
    for (const w of [new QwenChatWrapper(), new Llama3_1ChatWrapper(), new MistralChatWrapper()]) expect(await hasToolSyntax(w), w.wrapperName).toBe(true);
    for (const w of [new GeneralChatWrapper(), new ChatMLChatWrapper(), new Llama2ChatWrapper()]) expect(await hasToolSyntax(w), w.wrapperName).toBe(false);
    const template = (file: string) => readFileSync(new URL(`../fixtures/${file}`, import.meta.url), "utf8");
    expect(await hasToolSyntax(new JinjaTemplateChatWrapper({ template: template("tiny-arith-tools/chat_template.jinja") }))).toBe(true);
    const plain = (JSON.parse(template("tiny-arith/hf/tokenizer_config.json")) as { chat_template: string }).chat_template;
    expect(await hasToolSyntax(new JinjaTemplateChatWrapper({ template: plain }))).toBe(false);
  });
});
