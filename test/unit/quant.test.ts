import { describe, expect, it } from "vitest";
import { isModelGguf, quantOfFile, splitInfo } from "../../src/backends/hub/quant.js";
import { selectGguf, selectHf, availableQuants } from "../../src/backends/hub/select.js";
import type { RepoFile } from "../../src/backends/hub/api.js";

const f = (path: string, size = 10): RepoFile => ({ path, size, gitOid: "0".repeat(40), sha256: "a".repeat(64) });

describe("quant type in file names", () => {
  it.each([
    ["Qwen2.5-0.5B-Instruct-Q8_0.gguf", "Q8_0"],
    ["qwen2.5-0.5b-instruct-q4_k_m.gguf", "Q4_K_M"],
    ["tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf", "Q4_K_M"],
    ["Phi-3-mini-4k-instruct-fp16.gguf", "F16"],
    ["model-Q4_0_4_4.gguf", "Q4_0_4_4"],
    ["Q8_0/Big-Model-Q8_0-00001-of-00002.gguf", "Q8_0"],
    ["gemma-2-2b-it-IQ3_XXS.gguf", "IQ3_XXS"],
    ["model.gguf", undefined],
  ])("%s → %s", (name, want) => {
    expect(quantOfFile(name)).toBe(want);
  });

  it("does not take a quant out of a longer word", () => {
    expect(quantOfFile("XQ8_0Y.gguf")).toBeUndefined();
  });

  it("recognises splits and non-model GGUFs", () => {
    expect(splitInfo("a/m-Q8_0-00002-of-00003.gguf")).toEqual({ index: 2, count: 3, group: "a/m-Q8_0" });
    expect(splitInfo("m-Q8_0.gguf")).toBeUndefined();
    expect(isModelGguf("mmproj-model-f16.gguf")).toBe(false);
    expect(isModelGguf("m-Q8_0.gguf")).toBe(true);
  });
});

describe("selecting files from a repo listing", () => {
  const repo = [f("README.md"), f("m-Q8_0.gguf"), f("m-Q4_K_M.gguf"), f("m-Q2_K.gguf"), f("mmproj-m-f16.gguf")];

  it("picks the requested type, case-insensitively", () => {
    expect(selectGguf("o/r", repo, "q8_0").files.map((x) => x.path)).toEqual(["m-Q8_0.gguf"]);
  });

  it("falls back to Q4_K_M when several types exist", () => {
    expect(selectGguf("o/r", repo, undefined).entry).toBe("m-Q4_K_M.gguf");
  });

  it("lists the available types when the type is missing", () => {
    expect(() => selectGguf("o/r", repo, "Q6_K")).toThrow(/no Q6_K file/);
    try {
      selectGguf("o/r", repo, "Q6_K");
    } catch (e) {
      expect((e as { hint: string }).hint).toContain("Q2_K, Q4_K_M, Q8_0");
    }
    expect(availableQuants(repo)).toEqual(["Q2_K", "Q4_K_M", "Q8_0"]);
  });

  it("takes every part of a split model and refuses an incomplete one", () => {
    const split = [f("Q8_0/m-Q8_0-00002-of-00002.gguf"), f("Q8_0/m-Q8_0-00001-of-00002.gguf")];
    const sel = selectGguf("o/r", split, "Q8_0");
    expect(sel.files.map((x) => x.path)).toEqual(["Q8_0/m-Q8_0-00001-of-00002.gguf", "Q8_0/m-Q8_0-00002-of-00002.gguf"]);
    expect(sel.entry).toBe("Q8_0/m-Q8_0-00001-of-00002.gguf");
    expect(() => selectGguf("o/r", split.slice(0, 1), "Q8_0")).toThrow(/incomplete/);
  });

  it("filters HF files by include and exclude globs, in sub-folders too", () => {
    const files = [f("model.safetensors"), f("config.json"), f("sub/extra.json"), f("pytorch_model.bin"), f("README.md")];
    expect(selectHf("o/r", files, undefined, undefined).files.map((x) => x.path)).toEqual(["model.safetensors", "config.json", "sub/extra.json"]);
    expect(selectHf("o/r", files, ["*.json"], ["sub/*"]).files.map((x) => x.path)).toEqual(["config.json"]);
    expect(() => selectHf("o/r", files, ["*.onnx"], undefined)).toThrow(/No file/);
  });
});
