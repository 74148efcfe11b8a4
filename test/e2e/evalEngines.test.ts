import { readFileSync } from "node:fs";
import path from "node:path";
import type { Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SequenceAnswerer } from "../../src/backends/llama/answer.js";
import { continuationLogLikelihoods } from "../../src/backends/llama/likelihood.js";
import { DistributionReader, logProbOf } from "../../src/backends/llama/logprobs.js";
import { samplingFor } from "../../src/backends/llama/generate.js";
import { type LoadedModel, loadModel } from "../../src/backends/llama/loader.js";
import { resolveModel } from "../../src/backends/store/resolve.js";
import { FIXTURE } from "../helpers/cli.js";

/**
 * Generated answers come from a plain token loop on the sequence for chat templates that need nothing
 * more, and from node-llama-cpp's LlamaChat for the others: both must give the same answers. And
 * multiple-choice scores come from node-llama-cpp's public controlledEvaluate (so that questions on
 * parallel sequences share decodes). Here they are checked against the eval backend's exact
 * full-vocabulary log-probabilities (logprobs.ts, which reads the native rows directly) on the same
 * model: same prompt + choice tokens, decoded from an empty cache in one batch.
 */
describe("eval engines, against node-llama-cpp's own", () => {
  let shared: LoadedModel;
  let reference: LoadedModel;
  beforeAll(async () => {
    const entry = resolveModel("tiny-arith");
    // One thread: vitest runs two files at once on this 2-core machine (see test/helpers/cli.ts).
    shared = await loadModel(entry, { threads: 1, sequences: 2 });
    reference = await loadModel(entry, { threads: 1, sequences: 1 });
  });
  afterAll(async () => {
    await shared?.dispose();
    await reference?.dispose();
  });

  async function exact(prompt: Token[], choice: Token[]): Promise<number> {
    const reader = new DistributionReader(reference);
    try {
      reader.clear();
      const all = Uint32Array.from([...prompt, ...choice]);
      const outputs = Uint32Array.from(choice, (_, k) => prompt.length - 1 + k);
      await reader.decode([{ sequence: 0, start: 0, tokens: all, outputs }]);
      let sum = 0;
      for (let k = 0; k < choice.length; k++) sum += logProbOf(await reader.row(k, 0), choice[k]!);
      return sum;
    } finally {
      reader.dispose();
    }
  }

  it("equal the exact full-vocabulary log-probabilities, question after question on one sequence", async () => {
    const lines = readFileSync(path.join(FIXTURE, "data", "add-choice.jsonl"), "utf8").trim().split("\n").slice(0, 6);
    const wrapper = await shared.chatWrapper();
    const sequence = shared.context.getSequence();
    try {
      for (const line of lines) {
        const q = JSON.parse(line) as { question: string; choices: string[] };
        const { contextText } = wrapper.generateContextState({ chatHistory: [{ type: "user", text: q.question }, { type: "model", response: [] }] });
        const prompt = contextText.tokenize(shared.model.tokenizer);
        const choices = q.choices.map((c) => shared.model.tokenize(c, false));
        // Choices are plain digits: no BOS or other special token sneaks into a continuation.
        for (const c of choices) expect(shared.model.detokenize(c)).toMatch(/^\d+$/);
        const got = await continuationLogLikelihoods(sequence, prompt, choices);
        for (const [i, c] of choices.entries()) {
          const want = await exact(prompt, c);
          expect(Math.abs(got[i]! - want), `${q.question} → ${q.choices[i]}: ${got[i]} vs ${want}`).toBeLessThan(1e-4);
        }
      }
    } finally {
      sequence.dispose();
    }
  });
});

describe("generated answers", () => {
  let loaded: LoadedModel;
  beforeAll(async () => {
    loaded = await loadModel(resolveModel("tiny-arith"), { threads: 1, lora: [{ path: path.join(FIXTURE, "gguf", "lora-sub-f32.gguf"), scale: 0.5 }] });
  });
  afterAll(async () => {
    await loaded?.dispose();
  });

  it("the token loop answers exactly as LlamaChat does, greedy and sampled, question after question on one sequence", async () => {
    // Half the subtraction adapter: a model that is often wrong, so the answers vary.
    const qs = ["12+34", "57-23", "99+99", "80-7", "5+5", "61-18"];
    const sequence = loaded.context.getSequence();
    try {
      for (const temperature of [0, 3]) {
        const sampling = samplingFor({ temperature, topK: 0, topP: 1, minP: 0, maxTokens: 12, stop: ["9"] }, loaded.context.contextSize);
        const a = new SequenceAnswerer(loaded, sequence, await loaded.chatWrapper(), sampling);
        for (const [i, q] of qs.entries()) {
          const fast = await a.answer([{ type: "user", text: q }], 100 + i, q);
          const chat = await a.answer([{ type: "user", text: q }], 100 + i, q, "chat");
          expect(fast.text, `${q} at temperature ${temperature}`).toBe(chat.text);
          expect(fast.stopReason).toBe(chat.stopReason);
        }
      }
    } finally {
      sequence.dispose();
    }
  });
});
