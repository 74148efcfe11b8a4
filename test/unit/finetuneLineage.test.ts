import { describe, expect, it } from "vitest";
import { lineageHyperparameters } from "../../src/backends/finetune/outputs.js";
import { settingsOf } from "../../src/backends/finetune/options.js";

describe("the hyper-parameters a fine-tune's lineage records", () => {
  it("a full fine-tune: no LoRA rank, alpha, dropout, targets or qlora, which it never used", () => {
    const h = lineageHyperparameters(settingsOf({ ref: "x", data: "d.jsonl", full: true, lr: 1e-3 }), 256);
    expect(h).toMatchObject({ full: true, lr: 1e-3, maxSeqLen: 256 });
    for (const key of ["rank", "alpha", "dropout", "targetModules", "qlora"]) expect(h).not.toHaveProperty(key);
  });

  it("a LoRA fine-tune: its adapter's settings, as before", () => {
    expect(lineageHyperparameters(settingsOf({ ref: "x", data: "d.jsonl", rank: 8 }), 256)).toMatchObject({ full: false, rank: 8, alpha: 32, dropout: 0, targetModules: "all-linear", qlora: false, maxSeqLen: 256 });
  });
});
