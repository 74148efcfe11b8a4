import type { AdapterInfo, ModelInfo } from "../backends/store/info.js";
import type { ModelSource } from "../backends/store/types.js";
import { formatBytes, formatCount } from "../core/format.js";

/** `slm info` as aligned "key  value" lines; rows without a value are left out. */
type Row = [string, string | number | undefined];

function rows(list: Row[]): string {
  const kept = list.filter(([, v]) => v !== undefined && v !== "");
  const width = Math.max(...kept.map(([k]) => k.length));
  return kept.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join("\n");
}

const count = (n: number | undefined) => (n === undefined ? undefined : `${formatCount(n)} (${n.toLocaleString("en-US")})`);

export function modelInfoText(info: ModelInfo): string {
  const m = info.model;
  const g = info.gguf;
  const h = info.hf;
  const a = g?.adapter;
  return rows([
    ["name", m.name],
    ["format", a ? `gguf (LoRA adapter${a.kind !== "lora" ? `, ${a.kind}` : ""}: load it with --lora on its base model)` : h ? `${m.format} (Hugging Face ${h.weights === "none" ? "folder without weights" : h.weights})` : m.format],
    ["path", m.path],
    ["size", formatBytes(m.size)],
    ["architecture", g?.architecture ?? (h ? [h.architecture, h.modelType && h.architecture ? `(${h.modelType})` : h.modelType].filter(Boolean).join(" ") : undefined) ?? m.architecture],
    ["parameters", count(g ? g.parameters : (h?.parameters ?? m.parameters))],
    ["adapter base", a?.base],
    ["adapter rank", a?.rank === undefined ? undefined : Array.isArray(a.rank) ? a.rank.join(", ") : a.rank],
    ["adapter alpha", a?.alpha],
    ["adapter targets", a?.targets.join(", ")],
    ["context length", g?.contextLength ?? h?.contextLength ?? m.contextLength],
    ["file type", g?.fileType ?? m.quant],
    ["dtype", h?.dtype],
    ["tensors", h?.tensors],
    ["layers", g?.blockCount ?? h?.layers],
    ["embedding", g?.embeddingLength ?? h?.hiddenSize],
    ["tokenizer", g?.tokenizer ? `${g.tokenizer}${g.vocabSize ? ` (${g.vocabSize} tokens)` : ""}` : h?.tokenizer ? `${h.tokenizer}${h.vocabSize ? ` (${h.vocabSize} tokens)` : ""}` : undefined],
    ["chat template", a ? undefined : g ? (g.hasChatTemplate ? "yes" : "no") : h ? (h.hasChatTemplate ? "yes" : "no") : undefined],
    ["splits", g && g.splitCount > 1 ? g.splitCount : undefined],
    ["LoRA adapters", m.adapters?.length ? m.adapters.map((x) => `${x.path}${x.scale !== 1 ? ` (scale ${x.scale})` : ""}`).join(", ") : undefined],
    ["runs as", info.converted ? `${info.converted.name} (GGUF converted from it${info.converted.current ? "" : `; stale: ${info.converted.changed?.join(", ")} changed since`}) ${info.converted.path}` : undefined],
    ["source", sourceText(m.source)],
    ["lineage", m.lineage.length === 0 ? "none (original)" : m.lineage.map((l) => `${l.method} of ${l.from}`).join(" ← ")],
  ]);
}

export function adapterInfoText({ peft: p }: AdapterInfo): string {
  return rows([
    ["path", p.path],
    ["format", `PEFT ${p.peftType === "LORA" ? "LoRA" : p.peftType} adapter (load it with --lora on its base model)`],
    ["size", formatBytes(p.size)],
    ["base", p.base ?? "not recorded (base_model_name_or_path is empty)"],
    ["rank", p.rank],
    ["alpha", p.alpha === undefined ? undefined : `${p.alpha}${p.useRslora ? " (rank-stabilised)" : ""}`],
    ["targets", p.targets.join(", ")],
    ["variant", p.useDora ? "DoRA" : undefined],
    ["task", p.taskType],
    ["tensors", p.tensors],
  ]);
}

function sourceText(s: ModelSource): string {
  switch (s.type) {
    case "hub":
      return `${s.repo}@${s.revision} (commit ${s.commit.slice(0, 12)})`;
    case "builtin":
      return "built in (ships with slm)";
    default:
      return s.type;
  }
}
