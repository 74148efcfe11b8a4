import type { LineageStep } from "../backends/store/types.js";

/** `slm info`'s "pruned" row: what the latest prune in a model's lineage removed, by which measure, and any healing. */
export function pruneText(lineage: readonly LineageStep[]): string | undefined {
  const step = lineage.find((l) => l.method === "prune-layers" || l.method === "prune-ffn");
  if (!step) return undefined;
  const p = step.parameters as {
    removedLayers?: number[]; blockInfluence?: number[]; layers?: string; intermediateSize?: string; removedChannels?: number; channelsFile?: string;
    heal?: { mode: string; steps: number; loss?: number[] };
  };
  const heal = p.heal ? `; healed by ${p.heal.mode === "distill" ? "distillation from the unpruned model" : "fine-tuning on data"}, ${p.heal.steps} steps${p.heal.loss ? `, loss ${p.heal.loss.map((x) => x.toFixed(3)).join(" → ")}` : ""}` : "";
  if (step.method === "prune-layers") {
    const scores = p.blockInfluence ?? [];
    const removed = (p.removedLayers ?? []).map((i) => `${i}${scores[i] !== undefined ? ` (influence ${scores[i].toFixed(4)})` : ""}`).join(", ");
    return `block${(p.removedLayers ?? []).length === 1 ? "" : "s"} ${removed} dropped, ${p.layers ?? "?"} blocks: the least block influence of ${scores.map((s) => s.toFixed(4)).join(", ")}${heal}`;
  }
  return `FFN ${p.intermediateSize ?? "?"} channels per block, the smallest activations removed (${p.removedChannels ?? "?"} in all; ${p.channelsFile ?? "prune.json"} lists them)${heal}`;
}
