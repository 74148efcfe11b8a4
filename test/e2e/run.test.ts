import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { FIXTURE, ROOT, lastJson, sandbox, slm } from "../helpers/cli.js";

const LORA = path.join(FIXTURE, "gguf", "lora-sub-f32.gguf");
const F16 = path.join(ROOT, "models", "tiny-arith-f16.gguf");

describe("slm run", () => {
  const sb = sandbox();

  it("answers the built-in model's sum at temperature 0", async () => {
    const r = await slm(["run", "tiny-arith", "12+34", "--temperature", "0"], sb);
    expect(r.exitCode, r.all).toBe(0);
    expect(r.stdout).toBe("46");
  });

  it("refuses a quantization the built-in model does not have, instead of running its F16 file under that name", async () => {
    // `slm run tiny-arith:q4` ran the F16 file: a user comparing quantizations measured F16 twice.
    for (const ref of ["tiny-arith:Q4_K_M", "tiny-arith:q4"]) {
      const r = await slm(["run", ref, "12+34", "-t", "0"], sb);
      expect(r.exitCode, r.all).toBe(3);
      expect(r.stderr).toContain("built in as F16 only");
      expect(r.stdout).toBe("");
    }
    expect((await slm(["run", "tiny-arith:Q4_K_M", "1+1"], sb)).stderr).toContain("slm quantize tiny-arith --type Q4_K_M");
    const own = await slm(["run", "tiny-arith:f16", "12+34", "-t", "0"], sb);
    expect(own.exitCode, own.all).toBe(0);
    expect(own.stdout).toBe("46");
  });

  it("refuses a prompt that leaves no room for an answer, with what to change, instead of answering a cut prompt", async () => {
    // 120 sums are ~480 tokens: more than tiny-arith's 256-token training context, which --ctx cannot pass.
    const long = "1+2 ".repeat(120);
    for (const args of [["--ctx", "1024"], ["--raw"]]) {
      const r = await slm(["run", "tiny-arith", long, "-t", "0", ...args], sb);
      expect(r.exitCode, r.all).toBe(2);
      expect(r.stderr).toMatch(/The prompt takes \d{3} tokens, the context holds 256\./);
      expect(r.stderr).toContain("Shorten the prompt: tiny-arith was trained on 256 tokens.");
      expect(r.stdout).toBe("");
    }
    const small = await slm(["run", "tiny-arith", "1+2 ".repeat(20), "-t", "0", "--ctx", "64"], sb);
    expect(small.exitCode, small.all).toBe(2);
    expect(small.stderr).toContain("Give a larger --ctx (up to 256");
  });

  it("reads the prompt from stdin", async () => {
    const r = await slm(["run", "tiny-arith", "-t", "0"], sb, { input: "20+22" });
    expect(r.exitCode, r.all).toBe(0);
    expect(r.stdout.trim()).toBe("42");
  });

  it("drops the one line ending that echo and editors add to a piped prompt, and keeps the rest", async () => {
    // `echo 12+34 | slm run tiny-arith -t 0` answered 66: the newline was part of the prompt.
    for (const input of ["12+34\n", "12+34\r\n"]) {
      const r = await slm(["run", "tiny-arith", "-t", "0", "--json"], sb, { input });
      expect(r.exitCode, r.all).toBe(0);
      expect(lastJson(r.stdout).data, JSON.stringify(input)).toMatchObject({ text: "46", promptTokens: 8 });
    }
    // Only one: a blank line the user typed is part of the prompt (one token more).
    const two = await slm(["run", "tiny-arith", "-t", "0", "--json"], sb, { input: "12+34\n\n" });
    expect((lastJson(two.stdout).data as { promptTokens: number }).promptTokens).toBe(9);
    const inner = await slm(["run", "tiny-arith", "-t", "0", "--raw", "-n", "1", "--json"], sb, { input: "12\n+34\n" });
    expect((lastJson(inner.stdout).data as { promptTokens: number }).promptTokens).toBe(7);
  });

  it("prints one JSON result with text, token counts, timings and the settings used", async () => {
    const r = await slm(["run", "tiny-arith", "33+44", "-t", "0", "--json"], sb);
    expect(r.exitCode, r.all).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines).toHaveLength(1);
    const res = lastJson(r.stdout);
    expect(res.type).toBe("result");
    const data = res.data as { text: string; promptTokens: number; completionTokens: number; timings: { totalMs: number }; settings: { threads: number; contextSize: number; temperature: number } };
    expect(data.text).toBe("77");
    expect(data.promptTokens).toBeGreaterThan(3);
    expect(data.completionTokens).toBeGreaterThanOrEqual(2);
    expect(data.timings.totalMs).toBeGreaterThan(0);
    expect(data.settings).toMatchObject({ contextSize: 256, temperature: 0 });
    expect(data.settings.threads).toBeGreaterThanOrEqual(1);
  });

  it("is repeatable at temperature 0 and with a fixed seed", async () => {
    const a = await slm(["run", "tiny-arith", "45+45", "-t", "0"], sb);
    const b = await slm(["run", "tiny-arith", "45+45", "-t", "0"], sb);
    expect(a.stdout).toBe(b.stdout);
    const s1 = await slm(["run", "tiny-arith", "7+8", "-t", "1.5", "--seed", "7", "-n", "12"], sb);
    const s2 = await slm(["run", "tiny-arith", "7+8", "-t", "1.5", "--seed", "7", "-n", "12"], sb);
    expect(s1.exitCode, s1.all).toBe(0);
    expect(s1.stdout).toBe(s2.stdout);
  });

  it("--raw skips the chat template; prompt tokens are counted as the model sees them", async () => {
    const chat = lastJson((await slm(["run", "tiny-arith", "12+34", "-t", "0", "--json"], sb)).stdout).data as { promptTokens: number };
    // <s> <|user|> 1 2 + 3 4 <|assistant|>, as the HF chat template makes it (the token meter said 7).
    expect(chat.promptTokens).toBe(8);
    const raw = await slm(["run", "tiny-arith", "12+34", "-t", "0", "--raw", "-n", "4", "--json"], sb);
    expect(raw.exitCode, raw.all).toBe(0);
    const rawData = lastJson(raw.stdout).data as { promptTokens: number; completionTokens: number };
    // <s> 1 2 + 3 4
    expect(rawData.promptTokens).toBe(6);
    expect(rawData.completionTokens).toBeLessThanOrEqual(4);
  });

  it("--raw parses the model's control tokens in the prompt, as llama.cpp's server does", async () => {
    // The chat format written out by hand: the same 8 tokens and the same answer as the templated prompt
    // (as plain text, <|user|> was 9 characters' worth of tokens and the answer was 64).
    const r = await slm(["run", "tiny-arith", "<|user|>12+34<|assistant|>", "--raw", "-t", "0", "--json"], sb);
    expect(r.exitCode, r.all).toBe(0);
    expect(lastJson(r.stdout).data).toMatchObject({ text: "46", promptTokens: 8 });
  });

  it("caps --ctx at the model's training length, with a warning", async () => {
    const r = await slm(["run", "tiny-arith", "12+34", "-t", "0", "--ctx", "999999", "--json"], sb);
    expect(r.exitCode, r.all).toBe(0);
    expect(lastJson(r.stdout).data).toMatchObject({ text: "46", settings: { contextSize: 256 } });
    expect(r.stdout).toMatch(/"level":"warn","message":"--ctx 999999 is more than the model was trained on: using its 256 tokens\."/);
    const plain = await slm(["run", "tiny-arith", "12+34", "-t", "0", "--ctx", "300"], sb);
    expect(plain.stdout).toBe("46");
    expect(plain.stderr).toMatch(/^warn: --ctx 300 is more than the model was trained on: using its 256 tokens\.$/m);
  });

  it("constrains output to a JSON schema", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "slm-schema-"));
    const schema = path.join(dir, "s.json");
    writeFileSync(schema, JSON.stringify({ type: "object", properties: { answer: { enum: ["yes", "no"] } }, required: ["answer"] }));
    const r = await slm(["run", "tiny-arith", "12+34", "-t", "0", "--json-schema", schema, "-n", "40"], sb);
    expect(r.exitCode, r.all).toBe(0);
    expect(["yes", "no"]).toContain(JSON.parse(r.stdout).answer);
    writeFileSync(schema, "{not json");
    const bad = await slm(["run", "tiny-arith", "1+1", "--json-schema", schema], sb);
    expect(bad.exitCode).toBe(2);
  });

  it("loads a LoRA adapter that turns addition into subtraction", async () => {
    const base = await slm(["run", "tiny-arith", "57-23", "-t", "0"], sb);
    const lora = await slm(["run", "tiny-arith", "57-23", "-t", "0", "--lora", LORA], sb);
    expect(lora.exitCode, lora.all).toBe(0);
    expect(lora.stdout.trim()).toBe("34");
    expect(base.stdout.trim()).not.toBe("34");
    const scaled0 = await slm(["run", "tiny-arith", "57-23", "-t", "0", "--lora", `${LORA}:0`], sb);
    expect(scaled0.stdout).toBe(base.stdout);
  });

  it("runs a local .gguf file by path", async () => {
    const r = await slm(["run", path.join(FIXTURE, "gguf", "tiny-arith-f32.gguf"), "30+11", "-t", "0"], sb);
    expect(r.exitCode, r.all).toBe(0);
    expect(r.stdout.trim()).toBe("41");
  });

  it("gives clear errors for a missing model, a missing adapter, a truncated and a non-GGUF file", async () => {
    const missing = await slm(["run", "no-such-model", "hi"], sb);
    expect(missing.exitCode).toBe(3);
    const noLora = await slm(["run", "tiny-arith", "1+1", "--lora", "/nonexistent/a.gguf"], sb);
    expect(noLora.exitCode).toBe(3);
    // A mistyped scale is a bad scale, not a missing adapter named "…:abc".
    for (const spec of [`${LORA}:abc`, "somedir:abc", `${LORA}:`]) {
      const badScale = await slm(["run", "tiny-arith", "1+1", "--lora", spec], sb);
      expect(badScale.exitCode, spec).toBe(2);
      expect(badScale.stderr, spec).toMatch(/is not a LoRA scale/);
    }
    const dir = mkdtempSync(path.join(tmpdir(), "slm-bad-"));
    const truncated = path.join(dir, "t.gguf");
    writeFileSync(truncated, readFileSync(F16).subarray(0, 1_000_000));
    const t = await slm(["run", truncated, "1+1"], sb);
    expect(t.exitCode).toBe(1);
    expect(t.stderr).toMatch(/truncated/);
    const junk = path.join(dir, "junk.gguf");
    writeFileSync(junk, "this is not a model at all, just text");
    const j = await slm(["run", junk, "1+1"], sb);
    expect(j.exitCode).toBe(1);
    expect(j.stderr).toMatch(/not a readable GGUF/);
    for (const r of [missing, noLora, t, j]) expect(r.stderr).not.toMatch(/\n\s+at /);
    const empty = await slm(["run", "tiny-arith", ""], sb);
    expect(empty.exitCode).toBe(2);
  });
});
