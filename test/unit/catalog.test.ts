import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { QUANT_TYPES } from "../../src/backends/hub/quant.js";
import { catalog } from "../../src/core/catalog.js";
import { isValidRepoId } from "../../src/core/modelRef.js";
import { ROOT } from "../helpers/cli.js";

describe("the catalog data file", () => {
  const entries = catalog();

  it("has at least 12 downloadable models, each complete", () => {
    const hub = entries.filter((e) => !e.builtin);
    expect(hub.length).toBeGreaterThanOrEqual(12);
    for (const e of hub) {
      expect(isValidRepoId(e.gguf!.repo), e.id).toBe(true);
      expect(isValidRepoId(e.hf!.repo), e.id).toBe(true);
      expect(QUANT_TYPES as readonly string[]).toContain(e.gguf!.defaultQuant);
      expect(e.parameters).toBeGreaterThan(1e7);
      expect(e.contextLength).toBeGreaterThanOrEqual(2048);
      expect(e.license).toMatch(/\S/);
    }
  });

  it("stores no file names that could go stale", () => {
    const raw = readFileSync(path.join(ROOT, "catalog", "models.json"), "utf8");
    const withoutBuiltin = raw.replace(/"builtin":\s*\{[^}]*\}/g, "");
    expect(withoutBuiltin).not.toMatch(/\.gguf"/i);
    expect(withoutBuiltin).not.toMatch(/\.safetensors"/i);
  });

  it("says for each repo where its name was checked, or that it was not (no machine here reaches the Hub)", () => {
    for (const e of entries.filter((x) => !x.builtin)) expect(e.checked, e.id).toMatch(/^(https:\/\/\S+|unverified)/);
  });

  it("points phi-3 at the current (June 2024, Phi-3.1) weights and says so; marks gated and embedding models", () => {
    const phi3 = entries.find((e) => e.aliases.includes("phi-3"))!;
    expect(phi3.gguf!.repo).toMatch(/Phi-3\.1-mini-4k-instruct-GGUF$/);
    expect(phi3.weights).toMatch(/June 2024/);
    for (const id of ["gemma-3-270m", "gemma-3-1b", "gemma-3-4b", "llama-3.2-1b"]) expect(entries.find((e) => e.id === id)?.hf?.gated, id).toBe(true);
    expect(entries.filter((e) => e.kind === "embedding").map((e) => e.id)).toEqual(["nomic-embed-text-v1.5"]);
    for (const id of ["phi-4-mini", "qwen3-0.6b", "qwen3-1.7b", "qwen3-4b", "smollm3-3b", "lfm2-700m", "lfm2-1.2b"]) expect(entries.some((e) => e.id === id), id).toBe(true);
  });

  it("has no name or alias twice", () => {
    const names = entries.flatMap((e) => [e.id, ...e.aliases]);
    expect(new Set(names).size).toBe(names.length);
  });
});
