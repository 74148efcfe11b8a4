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

  it("has no name or alias twice", () => {
    const names = entries.flatMap((e) => [e.id, ...e.aliases]);
    expect(new Set(names).size).toBe(names.length);
  });
});
