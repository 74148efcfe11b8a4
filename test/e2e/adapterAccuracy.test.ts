import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { resolveLoraArg } from "../../src/backends/adapters/resolve.js";
import { type LoadedModel, loadModel } from "../../src/backends/llama/loader.js";
import { resolveModel } from "../../src/backends/store/resolve.js";
import { exactMatch, firstLines } from "../helpers/accuracy.js";
import { LORA_SUB } from "../helpers/peftAdapter.js";

describe("the PEFT adapter converted by slm, at run time (node-llama-cpp)", () => {
  let withLora: LoadedModel;
  beforeAll(async () => {
    vi.stubEnv("SLM_HOME", mkdtempSync(path.join(tmpdir(), "slm-home-")));
    const entry = resolveModel("tiny-arith");
    const adapter = await resolveLoraArg(LORA_SUB, {}, { baseGguf: entry.path });
    expect(path.relative(process.env.SLM_HOME!, adapter.path)).toMatch(/^adapters\//);
    // One thread: vitest runs two files at once on this 2-core machine (see test/helpers/cli.ts).
    withLora = await loadModel(entry, { threads: 1, lora: [adapter] });
  });
  afterAll(async () => {
    await withLora?.dispose();
    vi.unstubAllEnvs();
  });

  it("subtracts: ≥ 95 % exact match on the first 100 of sub-eval", async () => {
    expect(await exactMatch(withLora, firstLines("sub-eval.jsonl", 100))).toBeGreaterThanOrEqual(0.95);
  });
});
