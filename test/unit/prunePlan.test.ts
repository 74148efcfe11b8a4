import { describe, expect, it } from "vitest";
import { checkFlags, ffnSize, pruneSuffix } from "../../src/backends/prune/plan.js";
import { UsageError } from "../../src/core/errors.js";

describe("slm prune's plan", () => {
  it("keeps the FFN width a multiple of 32, at least 32 and narrower than before", () => {
    expect(ffnSize(768, 0.25)).toBe(576);
    expect(ffnSize(768, 0.3)).toBe(544); // 537.6 → the nearest multiple
    expect(ffnSize(768, 0.99)).toBe(32);
    expect(ffnSize(768, 0.01)).toBe(736); // 760 rounds to 768, which would cut nothing
    expect(ffnSize(8192, 0.5)).toBe(4096);
    expect(ffnSize(32, 0.5)).toBeUndefined();
  });

  it("names the result by what is left", () => {
    expect(pruneSuffix({ ref: "m", layers: 2 }, 24, undefined)).toBe("pruned-L22");
    expect(pruneSuffix({ ref: "m", ffn: 0.25 }, 24, 576)).toBe("pruned-ffn576");
  });

  it("refuses two cuts, no cut, and healing settings without healing", () => {
    expect(() => checkFlags({ ref: "m", layers: 1, ffn: 0.5 })).toThrow(UsageError);
    expect(() => checkFlags({ ref: "m" })).toThrow(/--layers K/);
    expect(() => checkFlags({ ref: "m", layers: 1, healSteps: 5 })).toThrow(/add --heal FILE or --heal-distill/);
    expect(() => checkFlags({ ref: "m", layers: 1, heal: "d.jsonl", healDistill: true })).toThrow(/not both/);
    expect(() => checkFlags({ ref: "m", layers: 1, heal: "d.jsonl", healSteps: 5 })).not.toThrow();
  });
});
