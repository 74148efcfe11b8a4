import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LoadedModel, loadModel } from "../../src/backends/llama/loader.js";
import { resolveModel } from "../../src/backends/store/resolve.js";
import { exactMatch, firstLines } from "../helpers/accuracy.js";
import { FIXTURE } from "../helpers/cli.js";

describe("accuracy through the real stack (node-llama-cpp, chat template, sampling)", () => {
  let base: LoadedModel;
  let withLora: LoadedModel;
  beforeAll(async () => {
    const entry = resolveModel("tiny-arith");
    // One thread: vitest runs two files at once on this 2-core machine (see test/helpers/cli.ts).
    base = await loadModel(entry, { threads: 1 });
    withLora = await loadModel(entry, { threads: 1, lora: [{ path: path.join(FIXTURE, "gguf", "lora-sub-f32.gguf"), scale: 1 }] });
  });
  afterAll(async () => {
    await base?.dispose();
    await withLora?.dispose();
  });

  it("tiny-arith adds: ≥ 95 % exact match on the first 100 of add-eval", async () => {
    expect(await exactMatch(base, firstLines("add-eval.jsonl", 100))).toBeGreaterThanOrEqual(0.95);
  });

  it("tiny-arith + LoRA subtracts: ≥ 95 % exact match on the first 100 of sub-eval", async () => {
    expect(await exactMatch(withLora, firstLines("sub-eval.jsonl", 100))).toBeGreaterThanOrEqual(0.95);
  });
});
