import path from "node:path";
import { describe, expect, it } from "vitest";
import { loraSource } from "../../src/backends/distill/distill.js";
import type { LineageStep } from "../../src/backends/store/types.js";
import { distillText } from "../../src/ui/distillInfo.js";

const ADAPTER = "test/fixtures/tiny-arith/lora-sub";

/** The lineage step outputs.ts writes for a distilled student (the fields distillText reads). */
function distilled(distill: Record<string, unknown>, full: boolean, kdAlpha: number | null): LineageStep[] {
  return [{ from: "/m/hf", method: "distill", parameters: { data: { examples: 4050 }, hyperparameters: { full, kdAlpha }, distill }, at: "2026-12-07T00:00:00Z" }];
}

describe("a distilled student's lineage names its whole teacher", () => {
  it("keeps --teacher-lora's adapters: local ones by absolute path, a Hub repo as given, a scale other than 1", () => {
    expect(loraSource(ADAPTER)).toBe(path.resolve(ADAPTER));
    expect(loraSource(`${ADAPTER}:0.5`)).toBe(`${path.resolve(ADAPTER)}:0.5`);
    expect(loraSource("someone/sub-adapter")).toBe("someone/sub-adapter");
  });

  it("slm info says which teacher (with its adapter), which KD, LoRA or full, and the dataset", () => {
    const token = distilled({ teacher: "tiny-arith", teacherLora: ["/fx/lora-sub"], dataset: "/h/datasets/tiny-arith+sub", kdLogprobs: 4 }, true, 0.7);
    expect(distillText(token)).toBe("from teacher tiny-arith + LoRA /fx/lora-sub: token-level KD (its top-4 log-probs, α 0.7), full fine-tuning; dataset /h/datasets/tiny-arith+sub (4,050 examples)");
    const sequence = distilled({ teacher: "qwen2.5-3b", dataset: "/h/datasets/q+chats", kdLogprobs: null }, false, null);
    expect(distillText(sequence)).toBe("from teacher qwen2.5-3b: sequence-level KD (trained on its answers), LoRA; dataset /h/datasets/q+chats (4,050 examples)");
    expect(distillText([{ from: "/m/hf", method: "finetune-lora", parameters: {}, at: "2026-12-07T00:00:00Z" }])).toBeUndefined();
  });
});
