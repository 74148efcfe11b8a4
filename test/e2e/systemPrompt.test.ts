import { JinjaTemplateChatWrapper } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChatEngine } from "../../src/backends/llama/chat.js";
import { generate } from "../../src/backends/llama/generate.js";
import { type LoadedModel, loadModel } from "../../src/backends/llama/loader.js";
import { resolveModel } from "../../src/backends/store/resolve.js";

/**
 * Without --system, slm sends no system message (as llama.cpp and Ollama do): node-llama-cpp would add
 * its own stock one ("You are a helpful, respectful and honest assistant…"). tiny-arith's template drops
 * system messages, so the model is given a template that renders them, and the prompt's token count
 * shows whether one was sent.
 */
const TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}<|assistant|>";

describe("no system prompt unless one is given", () => {
  let loaded: LoadedModel;
  beforeAll(async () => {
    const real = await loadModel(resolveModel("tiny-arith"), { threads: 1 });
    const wrapper = new JinjaTemplateChatWrapper({ template: TEMPLATE });
    loaded = { ...real, chatWrapper: async () => wrapper };
  });
  afterAll(async () => loaded?.dispose());

  it("slm run's generate: fewer prompt tokens without --system than with a two-letter one", async () => {
    const none = await generate(loaded, { prompt: "12+34", temperature: 0, maxTokens: 4 });
    const short = await generate(loaded, { prompt: "12+34", system: "Hi", temperature: 0, maxTokens: 4 });
    expect(none.promptTokens).toBeGreaterThan(0);
    expect(none.promptTokens).toBeLessThan(short.promptTokens);
  });

  it("chat: no system message, before or after /reset", async () => {
    const engine = await ChatEngine.create(loaded, { temperature: 0, maxTokens: 4 });
    const first = await engine.send("12+34");
    engine.setSystem("Hi");
    const withSystem = await engine.send("12+34");
    engine.setSystem(undefined);
    engine.reset();
    const afterReset = await engine.send("12+34");
    expect(first.promptTokens).toBeLessThan(withSystem.promptTokens);
    expect(afterReset.promptTokens).toBe(first.promptTokens);
  });
});
