import type { DistillOrigin } from "../backends/finetune/options.js";
import type { LineageStep } from "../backends/store/types.js";

/** `slm info`'s "distilled" row: the teacher (with its adapters), the kind of KD, and the dataset it made. */
export function distillText(lineage: readonly LineageStep[]): string | undefined {
  const step = lineage.find((l) => l.method === "distill");
  const p = step?.parameters as { distill?: DistillOrigin; hyperparameters?: { full?: boolean; kdAlpha?: number | null }; data?: { examples?: number } } | undefined;
  const d = p?.distill;
  if (!d) return undefined;
  const teacher = [d.teacher, ...(d.teacherLora ?? []).map((l) => `LoRA ${l}`)].join(" + ");
  const kd = d.kdLogprobs === null ? "sequence-level KD (trained on its answers)" : `token-level KD (its top-${d.kdLogprobs} log-probs, α ${p?.hyperparameters?.kdAlpha ?? 0.5})`;
  const examples = p?.data?.examples;
  return `from teacher ${teacher}: ${kd}, ${p?.hyperparameters?.full ? "full fine-tuning" : "LoRA"}; dataset ${d.dataset}${examples ? ` (${examples.toLocaleString("en-US")} examples)` : ""}`;
}
