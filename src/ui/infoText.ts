import type { AdapterInfo, ModelInfo } from "../backends/store/info.js";
import type { LineageStep, ModelSource, WeightQuantization } from "../backends/store/types.js";
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
    ["format", a ? `gguf (LoRA adapter${a.kind !== "lora" ? `, ${a.kind}` : ""}: load it with --lora on its base model)` : m.format === "gptq" || m.format === "awq" ? `${m.format} (Hugging Face folder of ${m.format.toUpperCase()}-packed weights)` : h ? `${m.format} (Hugging Face ${h.weights === "none" ? "folder without weights" : h.weights})` : m.format],
    ["path", m.path],
    ["size", formatBytes(m.size)],
    ["architecture", g?.architecture ?? (h ? [h.architecture, h.modelType && h.architecture ? `(${h.modelType})` : h.modelType].filter(Boolean).join(" ") : undefined) ?? m.architecture],
    // Packed int32 words are not weights: a GPTQ/AWQ folder's count is the one its quantization recorded.
    ["parameters", count(g ? g.parameters : info.quantization || m.quantization ? m.parameters : (h?.parameters ?? m.parameters))],
    ["quantization", quantizationText(info.quantization ?? m.quantization)],
    ["calibration", calibrationText(m.lineage)],
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

/** "GPTQ 4-bit, group size 128, act-order, symmetric": how a GPTQ/AWQ folder's weights are packed. */
export function quantizationText(q: WeightQuantization | undefined): string | undefined {
  if (!q) return undefined;
  const group = q.groupSize === -1 ? "per channel" : `group size ${q.groupSize}`;
  const parts = [`${q.method.toUpperCase()} ${q.bits}-bit`, group];
  if (q.method === "gptq") parts.push(q.descAct ? "act-order" : "no act-order", q.sym === false ? "asymmetric" : "symmetric");
  else if (q.zeroPoint !== undefined) parts.push(q.zeroPoint ? "zero point" : "no zero point");
  if (q.format) parts.push(`${q.method === "awq" ? "version" : "format"} ${q.format}`);
  return parts.join(", ");
}

/** The calibration data of the latest GPTQ/AWQ step in a model's lineage: file, form and content hash. */
function calibrationText(lineage: readonly LineageStep[]): string | undefined {
  const step = lineage.find((l) => l.method === "gptq" || l.method === "awq");
  const c = step?.parameters.calibration as { file?: string; format?: string; sha256?: string; tokens?: number } | undefined;
  if (!c?.file) return undefined;
  const details = [c.format, c.sha256 ? `sha256 ${c.sha256}` : undefined, c.tokens ? `${c.tokens.toLocaleString("en-US")} tokens` : undefined].filter(Boolean);
  return `${c.file}${details.length ? ` (${details.join(", ")})` : ""}`;
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
