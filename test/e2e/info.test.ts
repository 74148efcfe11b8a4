import { readdirSync, statSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { FIXTURE, lastJson, sandbox, slm } from "../helpers/cli.js";
import { type HubServer, startHubServer } from "../helpers/hubServer.js";

const HF = path.join(FIXTURE, "hf");
const PEFT = path.join(FIXTURE, "lora-sub");
const LORA_GGUF = path.join(FIXTURE, "gguf", "lora-sub-f32.gguf");
const F32 = path.join(FIXTURE, "gguf", "tiny-arith-f32.gguf");

/** The fixture's own facts, from its files and its README (not from slm). */
const HF_BYTES = readdirSync(HF).reduce((a, f) => a + statSync(path.join(HF, f)).size, 0);
const PARAMETERS = 3311872;
const TARGETS = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"];

describe("slm info on what is not a registered GGUF model", () => {
  const sb = sandbox();

  it("a Hugging Face folder: its size, architecture and parameter count from config.json and the safetensors headers", async () => {
    const r = await slm(["info", HF, "--json"], sb);
    expect(r.exitCode, r.all).toBe(0);
    const data = lastJson(r.stdout).data as { model: { name: string; size: number; format: string }; hf: Record<string, unknown> };
    expect(data.model).toMatchObject({ name: "tiny-arith", format: "hf", size: HF_BYTES });
    expect(data.hf).toMatchObject({ architecture: "LlamaForCausalLM", modelType: "llama", parameters: PARAMETERS, contextLength: 256, layers: 4, hiddenSize: 256, vocabSize: 320, weights: "safetensors", hasChatTemplate: true });
    const text = await slm(["info", HF], sb);
    expect(text.stdout).toMatch(/^size\s+13\.3 MB$/m);
    expect(text.stdout).toMatch(/^architecture\s+LlamaForCausalLM \(llama\)$/m);
    expect(text.stdout).toMatch(/^parameters\s+3\.3M \(3,311,872\)$/m);
    expect(text.stdout).toMatch(/^context length\s+256$/m);
  });

  it("a GGUF LoRA adapter says it is one, with its alpha, rank and targets", async () => {
    const r = await slm(["info", LORA_GGUF, "--json"], sb);
    expect(r.exitCode, r.all).toBe(0);
    expect(lastJson(r.stdout).data).toMatchObject({ gguf: { type: "adapter", adapter: { kind: "lora", alpha: 16, rank: 8, targets: ["attn_k", "attn_output", "attn_q", "attn_v", "ffn_down", "ffn_gate", "ffn_up"] } } });
    const text = await slm(["info", LORA_GGUF], sb);
    expect(text.stdout).toMatch(/^format\s+gguf \(LoRA adapter: load it with --lora on its base model\)$/m);
    expect(text.stdout).toMatch(/^adapter alpha\s+16$/m);
    expect(text.stdout).toMatch(/^adapter rank\s+8$/m);
    expect(text.stdout).not.toMatch(/chat template/);
    // A model is not described as an adapter.
    expect(lastJson((await slm(["info", F32, "--json"], sb)).stdout).data).not.toHaveProperty("gguf.adapter");
  });

  it("a PEFT adapter folder: its base, rank, alpha and targets instead of 'not a Hugging Face model folder'", async () => {
    const r = await slm(["info", PEFT, "--json"], sb);
    expect(r.exitCode, r.all).toBe(0);
    expect(lastJson(r.stdout).data).toEqual({
      peft: { path: PEFT, size: readdirSync(PEFT).reduce((a, f) => a + statSync(path.join(PEFT, f)).size, 0), peftType: "LORA", rank: 8, alpha: 16, targets: TARGETS, taskType: "CAUSAL_LM", useRslora: false, useDora: false, tensors: 56 },
    });
    const text = await slm(["info", PEFT], sb);
    expect(text.stdout).toMatch(/^format\s+PEFT LoRA adapter/m);
    expect(text.stdout).toMatch(/^rank\s+8$/m);
    expect(text.stdout).toMatch(/^alpha\s+16$/m);
    expect(text.stdout).toMatch(new RegExp(`^targets\\s+${TARGETS.join(", ")}$`, "m"));
    expect(text.stdout).toMatch(/^base\s+not recorded/m);
  });
});

describe("slm info on pulled quantizations", () => {
  let hub: HubServer;
  afterAll(() => hub?.close());

  it("org/repo:F16 finds the F16 pulled as org/repo, and a typo (:F61) gets a did-you-mean instead of 'not pulled yet'", async () => {
    hub = await startHubServer({ repos: [{ id: "acme/tiny-GGUF", files: [{ path: "tiny-arith-f32.gguf", file: F32 }] }] });
    const sb = sandbox(hub.url);
    expect((await slm(["pull", "acme/tiny-GGUF"], sb)).exitCode).toBe(0);
    const byQuant = await slm(["info", "acme/tiny-GGUF:F32"], sb);
    expect(byQuant.exitCode, byQuant.all).toBe(0);
    expect(byQuant.stdout).toMatch(/^name\s+acme\/tiny-GGUF$/m);
    const typo = await slm(["info", "acme/tiny-GGUF:F23"], sb);
    expect(typo.exitCode).toBe(3);
    expect(typo.stderr).toContain('error: "F23" in acme/tiny-GGUF:F23 is not a quantization type.');
    expect(typo.stderr).toContain("hint: Did you mean acme/tiny-GGUF:F32? Pulled: F32.");
    const other = await slm(["run", "acme/tiny-GGUF:Q8_0", "hi"], sb);
    expect(other.exitCode).toBe(3);
    expect(other.stderr).toContain("acme/tiny-GGUF:Q8_0 has not been pulled yet.");
    expect(other.stderr).toContain("Pulled from that repository: F32.");
  });
});
