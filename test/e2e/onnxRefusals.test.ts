import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { FIXTURE, sandbox, slm } from "../helpers/cli.js";

/** An ONNX folder: what is refused here is decided from its layout, before any graph is read. */
function onnxFolder(): string {
  const dir = path.join(mkdtempSync(path.join(tmpdir(), "slm-onnx-refuse-")), "tiny-arith-onnx");
  mkdirSync(path.join(dir, "onnx"), { recursive: true });
  for (const f of ["config.json", "tokenizer_config.json"]) copyFileSync(path.join(FIXTURE, "hf", f), path.join(dir, f));
  writeFileSync(path.join(dir, "onnx", "model.onnx"), "placeholder");
  return dir;
}

const TRAIN = path.join(FIXTURE, "data", "sub-train.jsonl");

describe("quantize, finetune and convert refuse ONNX models, saying to use the Hugging Face weights", () => {
  it.each([
    ["quantize", ["quantize", "--type", "Q8_0"], "llama.cpp quantization needs"],
    ["quantize --method gptq", ["quantize", "--method", "gptq", "--calibration", TRAIN], "GPTQ and AWQ need"],
    ["finetune", ["finetune", "--lora", TRAIN], "fine-tuning needs"],
    ["convert", ["convert"], "converting to GGUF needs"],
  ])("%s: exit 2, nothing registered", async (_, [verb, ...flags], what) => {
    const dir = onnxFolder();
    const sb = sandbox();
    const r = await slm([verb!, dir, ...flags], sb);
    expect(r.exitCode, r.all).toBe(2);
    expect(r.stderr).toContain(`tiny-arith-onnx is an ONNX model; ${what} the original Hugging Face weights (safetensors), not an ONNX graph.`);
    expect(r.stderr).toContain("slm pull <org/repo> --format hf");
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect((await slm(["list", "--json"], sb)).stdout).not.toContain("tiny-arith-onnx");
  });

  it("a registered export names the model it was exported from", async () => {
    const dir = onnxFolder();
    const sb = sandbox();
    const entry = { name: "tiny-arith-onnx", format: "onnx", path: dir, files: [], source: { type: "derived" }, onnx: { dtypes: ["fp32"], base: "model" }, size: 1, lineage: [{ from: "tiny-arith", method: "export-onnx", parameters: {}, at: "2026-01-01T00:00:00Z" }], createdAt: "2026-01-01T00:00:00Z" };
    mkdirSync(sb.home, { recursive: true });
    writeFileSync(path.join(sb.home, "registry.json"), JSON.stringify({ version: 1, models: { "tiny-arith-onnx": entry } }));
    const r = await slm(["finetune", "tiny-arith-onnx", "--lora", TRAIN], sb);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain("hint: It was exported from tiny-arith: use that instead.");
  });
});
