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
    const removed = p.removedLayers ?? [];
    const before = p.layers?.split(" ")[0] ?? "?";
    return `block${removed.length === 1 ? "" : "s"} ${removed.join(", ")} of ${before} dropped: the lowest block influence (by block: ${(p.blockInfluence ?? []).map((s) => s.toFixed(4)).join(", ")})${heal}`;
  }
  return `FFN ${p.intermediateSize ?? "?"} channels per block, the smallest activations removed (${p.removedChannels ?? "?"} in all; ${p.channelsFile ?? "prune.json"} lists them)${heal}`;
}
