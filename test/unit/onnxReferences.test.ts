import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { externalDataFiles, scanOnnxFolder } from "../../src/backends/onnx/scan.js";
import { type ModelInfo, modelInfo } from "../../src/backends/store/info.js";
import { registerModel } from "../../src/backends/store/registry.js";
import { modelInfoText } from "../../src/ui/infoText.js";
import { resolveModel } from "../../src/backends/store/resolve.js";
import { resolveRemoval } from "../../src/backends/store/targets.js";
import type { ModelEntry } from "../../src/backends/store/types.js";
import { EXIT } from "../../src/core/errors.js";
import { parseModelRef } from "../../src/core/modelRef.js";

const before = process.env.SLM_HOME;
let root: string;

/** A folder in the transformers.js layout; the .onnx files are placeholders (only their names matter here). */
function onnxFolder(name: string, files: string[], extra: string[] = []): string {
  const dir = path.join(root, name);
  mkdirSync(path.join(dir, "onnx"), { recursive: true });
  writeFileSync(path.join(dir, "config.json"), JSON.stringify({ model_type: "llama", architectures: ["LlamaForCausalLM"] }));
  for (const f of [...files.map((f) => `onnx/${f}`), ...extra]) writeFileSync(path.join(dir, f), "x");
  return dir;
}

beforeAll(() => {
  root = mkdtempSync(path.join(tmpdir(), "slm-onnx-refs-"));
  process.env.SLM_HOME = path.join(root, "home");
});
afterAll(() => {
  if (before === undefined) delete process.env.SLM_HOME;
  else process.env.SLM_HOME = before;
});

const err = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return e as { exitCode: number; message: string; hint?: string };
  }
  throw new Error("expected a throw");
};

describe("scanOnnxFolder", () => {
  it("lists the variants under onnx/ in the vocabulary's order, and external data per variant", () => {
    const dir = onnxFolder("scan", ["model_q4.onnx", "model.onnx", "model_quantized.onnx", "model.onnx_data", "model_q4f16.onnx", "other.onnx"]);
    writeFileSync(path.join(dir, "onnx", "model.onnx_data_1"), "x");
    expect(scanOnnxFolder(dir)).toEqual({ dtypes: ["fp32", "q8", "q4", "q4f16"], base: "model" });
    expect(externalDataFiles(dir, "fp32")).toEqual(["onnx/model.onnx_data", "onnx/model.onnx_data_1"]);
    expect(externalDataFiles(dir, "q4")).toEqual([]);
  });

  it("reads older Optimum exports (decoder_model_merged) and refuses folders without a variant or config.json", () => {
    expect(scanOnnxFolder(onnxFolder("merged", ["decoder_model_merged.onnx", "decoder_model_merged_quantized.onnx"]))).toEqual({ dtypes: ["fp32", "q8"], base: "decoder_model_merged" });
    expect(scanOnnxFolder(onnxFolder("encoder", ["encoder_model.onnx"]))).toBeUndefined();
    const noConfig = path.join(root, "noconfig");
    mkdirSync(path.join(noConfig, "onnx"), { recursive: true });
    writeFileSync(path.join(noConfig, "onnx", "model.onnx"), "x");
    expect(scanOnnxFolder(noConfig)).toBeUndefined();
  });
});

describe("ONNX references", () => {
  it("a local ONNX folder resolves as format onnx; :q4 and --dtype pick the variant", () => {
    const dir = onnxFolder("tiny-onnx", ["model.onnx", "model_q4.onnx"]);
    expect(resolveModel(dir)).toMatchObject({ format: "onnx", onnx: { dtypes: ["fp32", "q4"], base: "model" }, path: dir });
    expect(resolveModel(dir).dtype).toBeUndefined();
    expect(resolveModel(`${dir}:q4`)).toMatchObject({ format: "onnx", dtype: "q4", path: dir });
    expect(resolveModel(`${dir}:Q4`).dtype).toBe("q4");
    expect(resolveModel(dir, { dtype: "fp32" }).dtype).toBe("fp32");
  });

  it("an absent or unknown dtype is a usage error naming the variants present", () => {
    const dir = onnxFolder("tiny-onnx2", ["model.onnx", "model_q4.onnx"]);
    const e = err(() => resolveModel(`${dir}:q8`));
    expect(e.exitCode).toBe(EXIT.usage);
    expect(e.message).toBe(`tiny-onnx2 has no q8 variant; it has fp32, q4.`);
    const bad = err(() => resolveModel(dir, { dtype: "q3" }));
    expect(bad.exitCode).toBe(EXIT.usage);
    expect(bad.hint).toContain("fp32, fp16, q8, int8, uint8, q4, q4f16, bnb4");
    expect(err(() => resolveModel(`${dir}:q4`, { dtype: "fp32" })).message).toContain("asks for q4 and --dtype for fp32");
    // A suffix that is no dtype at all, on an ONNX folder: the vocabulary, not "no such file".
    const typo = err(() => resolveModel(`${dir}:q3`));
    expect(typo.exitCode).toBe(EXIT.usage);
    expect(typo.message).toBe(`"q3" in ${dir}:q3 is not an ONNX dtype.`);
  });

  it("a folder with both safetensors and onnx/ is the HF model unless a variant is asked for", () => {
    const dir = onnxFolder("both", ["model.onnx"], ["model.safetensors"]);
    expect(resolveModel(dir).format).toBe("hf");
    expect(resolveModel(dir, { dtype: "fp32" })).toMatchObject({ format: "onnx", dtype: "fp32" });
    expect(resolveModel(`${dir}:fp32`)).toMatchObject({ format: "onnx", dtype: "fp32" });
  });

  it("info of such a folder says it also holds ONNX variants, and how to get them", async () => {
    const dir = onnxFolder("both-info", ["model.onnx", "model_q4.onnx"]);
    // A safetensors file with no tensors: 8-byte header length, then the JSON header "{}".
    const header = Buffer.alloc(8);
    header.writeBigUInt64LE(2n);
    writeFileSync(path.join(dir, "model.safetensors"), Buffer.concat([header, Buffer.from("{}")]));
    const info = await modelInfo(dir);
    expect(info).toMatchObject({ model: { format: "hf" }, alsoOnnx: ["fp32", "q4"] });
    // Lines wrapped to 80 columns read as one here.
    expect(modelInfoText(info as ModelInfo).replace(/\n {16,}/g, " ")).toContain(`\nalso ONNX      fp32, q4 in onnx/ — described and run as ONNX when a dtype is asked for (${dir}:fp32, or --dtype)`);
  });

  it("a registered ONNX name takes :dtype; a registered GGUF name keeps :QUANT as before", async () => {
    const dir = onnxFolder("registered", ["model.onnx", "model_quantized.onnx"]);
    const base = { files: [], size: 1, lineage: [], createdAt: "2026-01-01T00:00:00Z" };
    const onnx: ModelEntry = { ...base, name: "my-onnx", format: "onnx", path: dir, source: { type: "derived" }, onnx: { dtypes: ["fp32", "q8"], base: "model" } };
    const gguf: ModelEntry = { ...base, name: "org/repo:F16", format: "gguf", path: "/x.gguf", source: { type: "hub", repo: "org/repo", revision: "main", commit: "c", endpoint: "e" }, quant: "F16" };
    await registerModel(onnx);
    await registerModel(gguf);
    expect(resolveModel("my-onnx:q8")).toMatchObject({ name: "my-onnx", dtype: "q8" });
    expect(resolveModel("my-onnx:fp32").dtype).toBe("fp32");
    expect(err(() => resolveModel("my-onnx:q3")).message).toBe(`"q3" in my-onnx:q3 is not an ONNX dtype.`);
    expect(resolveModel("org/repo:F16").name).toBe("org/repo:F16");
    // "org/repo" is registered (as a GGUF), but :fp32 is not one of its names: nothing reads it as a variant.
    expect(err(() => resolveModel("org/repo:fp32")).exitCode).toBe(EXIT.notFound);
    const pulled = err(() => resolveModel("org/repo:F16", { dtype: "q4" }));
    expect(pulled.message).toBe("org/repo:F16 is a GGUF model; --dtype picks a variant of an ONNX model.");
    expect(pulled.hint).toBe("Leave out --dtype; a GGUF quantization is picked with :TYPE (e.g. :Q8_0) when pulling.");
  });

  it("a dtype on a model that is not ONNX: the refusal names what was typed (--dtype or :q4) and a way that applies", () => {
    // The built-in GGUF has no pull to pick from: its way to ONNX variants is exporting its HF weights.
    const builtin = err(() => resolveModel("tiny-arith", { dtype: "q4" }));
    expect(builtin.exitCode).toBe(EXIT.usage);
    expect(builtin.message).toBe("tiny-arith is a GGUF model; --dtype picks a variant of an ONNX model.");
    expect(builtin.hint).toBe("Leave out --dtype, or export ONNX variants from the Hugging Face weights: `slm export tiny-arith --format onnx --dtype q4`.");
    // A Hugging Face folder asked for a variant by its suffix.
    const hf = path.join(root, "hf-only");
    mkdirSync(hf, { recursive: true });
    writeFileSync(path.join(hf, "config.json"), JSON.stringify({ model_type: "llama" }));
    writeFileSync(path.join(hf, "model.safetensors"), "x");
    const suffix = err(() => resolveModel(`${hf}:q4`));
    expect(suffix.message).toMatch(/ is a HF model; :q4 picks a variant of an ONNX model\.$/);
    expect(suffix.hint).toBe(`Use ${resolveModel(hf).name} without the suffix, or export it: \`slm export ${hf} --format onnx --dtype q4\`.`);
  });

  it("org/repo:q4 reads the suffix both as a quant and as an ONNX dtype; a .gguf file takes no dtype", () => {
    expect(parseModelRef("onnx-community/x:q4")).toEqual({ kind: "hub", repo: "onnx-community/x", quant: "Q4", dtype: "q4" });
    expect(parseModelRef("org/x:Q4_K_M")).toEqual({ kind: "hub", repo: "org/x", quant: "Q4_K_M" });
    const gguf = path.join(root, "a.gguf");
    writeFileSync(gguf, "GGUF");
    expect(err(() => parseModelRef(`${gguf}:q4`)).exitCode).toBe(EXIT.usage);
  });

  it("slm rm NAME:dtype is refused as one variant (rm takes whole models), not answered 'did you mean NAME'", async () => {
    const dir = onnxFolder("rm-variant", ["model.onnx", "model_fp16.onnx"]);
    await registerModel({ name: "rm-onnx", format: "onnx", path: dir, files: [], size: 1, lineage: [], createdAt: "2026-01-01T00:00:00Z", source: { type: "derived" }, onnx: { dtypes: ["fp32", "fp16"], base: "model" } });
    const none = { downloads: [], runs: [], bytes: 0 };
    const e = err(() => resolveRemoval(["rm-onnx:fp16"], none));
    expect(e.exitCode).toBe(EXIT.usage);
    expect(e.message).toBe("slm rm removes whole models; the fp16 variant of rm-onnx cannot be removed on its own. Nothing was removed.");
    expect(e.hint).toBe("`slm rm rm-onnx` removes the model with all its variants (fp32, fp16).");
    expect(resolveRemoval(["rm-onnx"], none)).toEqual([{ kind: "model", name: "rm-onnx" }]);
  });
});
