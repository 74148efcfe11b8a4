import { mkdtempSync, mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { assertSafeRepoPath } from "../../src/backends/hub/safePath.js";
import { EXIT } from "../../src/core/errors.js";
import { parseModelRef, registryNameFor } from "../../src/core/modelRef.js";

describe("model references", () => {
  it("resolves catalog aliases and quant suffixes", () => {
    const r = parseModelRef("phi-3:q8_0");
    expect(r.kind).toBe("catalog");
    if (r.kind === "catalog") {
      expect(r.entry.id).toBe("phi-3-mini");
      expect(r.quant).toBe("Q8_0");
    }
    expect(registryNameFor(parseModelRef("phi-3"))).toBe("phi-3-mini");
    expect(registryNameFor(parseModelRef("phi-3:Q4_K_M"))).toBe("phi-3-mini");
    expect(registryNameFor(parseModelRef("phi-3:Q8_0"))).toBe("phi-3-mini:Q8_0");
  });

  it("parses hub repos with and without hf:", () => {
    expect(parseModelRef("hf:bartowski/Qwen2.5-0.5B-Instruct-GGUF:Q8_0")).toEqual({ kind: "hub", repo: "bartowski/Qwen2.5-0.5B-Instruct-GGUF", quant: "Q8_0" });
    expect(parseModelRef("Qwen/Qwen2.5-0.5B-Instruct")).toEqual({ kind: "hub", repo: "Qwen/Qwen2.5-0.5B-Instruct", quant: undefined });
  });

  it("prefers a registered name over everything else", () => {
    expect(parseModelRef("phi-3", (n) => n === "phi-3")).toEqual({ kind: "registered", name: "phi-3" });
  });

  it("recognises local files and model folders", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "slm-ref-"));
    writeFileSync(path.join(dir, "m.gguf"), "x");
    mkdirSync(path.join(dir, "hf"));
    writeFileSync(path.join(dir, "hf", "config.json"), "{}");
    expect(parseModelRef(path.join(dir, "m.gguf"))).toEqual({ kind: "gguf-file", path: path.join(dir, "m.gguf") });
    expect(parseModelRef(path.join(dir, "hf"))).toEqual({ kind: "hf-folder", path: path.join(dir, "hf") });
    expect(() => parseModelRef(path.join(dir, "missing.gguf"))).toThrow(expect.objectContaining({ exitCode: EXIT.notFound }));
  });

  it("points a PEFT adapter folder to --lora on its base model, as docs/convert.md says", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "slm-ref-"));
    writeFileSync(path.join(dir, "adapter_config.json"), JSON.stringify({ base_model_name_or_path: "acme/base-model", r: 8 }));
    expect(() => parseModelRef(dir)).toThrow(expect.objectContaining({ exitCode: EXIT.usage, message: expect.stringContaining("PEFT adapter"), hint: expect.stringContaining(`slm run acme/base-model --lora ${dir}`) }));
  });

  it("suggests close catalog names for typos", () => {
    expect(() => parseModelRef("qwen2.5-0.5")).toThrow(expect.objectContaining({ exitCode: EXIT.notFound, hint: expect.stringContaining("qwen2.5-0.5b") }));
  });

  it("rejects malformed repo ids and quant suffixes", () => {
    expect(() => parseModelRef("hf:../etc")).toThrow(expect.objectContaining({ exitCode: EXIT.usage }));
    expect(() => parseModelRef("org/repo:Q4-K")).toThrow(expect.objectContaining({ exitCode: EXIT.usage }));
  });
});

describe("file names from the Hub", () => {
  it.each(["../evil.gguf", "/abs.gguf", "a/../../b", "a\\b.gguf", "C:x.gguf", "a//b", "./a"])("rejects %s", (p) => {
    expect(() => assertSafeRepoPath(p, "o/r")).toThrow(expect.objectContaining({ exitCode: EXIT.integrity }));
  });
  it.each(["model.gguf", "Q8_0/m-00001-of-00002.gguf", "a.b/c..d.json"])("accepts %s", (p) => {
    expect(() => assertSafeRepoPath(p, "o/r")).not.toThrow();
  });
});
