import type { AdapterInfo, ModelInfo } from "../backends/store/info.js";
import type { OnnxSummary } from "../backends/store/onnxInfo.js";
import type { OnnxValueInfo } from "../backends/onnx/proto.js";
import type { LineageStep, ModelSource, WeightQuantization } from "../backends/store/types.js";
import { formatBytes, formatCount } from "../core/format.js";
import { distillText } from "./distillInfo.js";
import { pruneText } from "./pruneInfo.js";

/** `slm info` as aligned "key  value" lines; rows without a value are left out. */
type Row = [string, string | number | undefined];

function rows(list: Row[]): string {
  const kept = list.filter(([, v]) => v !== undefined && v !== "");
  const width = Math.max(...kept.map(([k]) => k.length));
  const indent = " ".repeat(width + 2);
  // A value of several lines continues under the first one's column; a line too long for 80 columns is wrapped there too.
  return kept.map(([k, v]) => `${k.padEnd(width)}  ${String(v).split("\n").flatMap((l) => wrapLine(l, COLUMNS - indent.length)).join(`\n${indent}`)}`).join("\n");
}

/** Lines of `slm info` fit a plain 80-column terminal. */
const COLUMNS = 80;

/**
 * Breaks a line at spaces to fit `room`; continuations are indented two more. A break before a shape
 * (" [") is preferred, so a tensor's name and type stay on one line and its shape on the next. A word
 * longer than the room (a path) stays whole.
 */
export function wrapLine(line: string, room: number): string[] {
  const out: string[] = [];
  let rest = line;
  let width = room;
  while (rest.length > width) {
    const head = rest.slice(0, width + 1);
    const shape = head.lastIndexOf(" [");
    const space = head.lastIndexOf(" ");
    const at = shape > 0 ? shape : space;
    if (at <= 0) break;
    out.push(rest.slice(0, at).trimEnd());
    rest = rest.slice(at + 1).trimStart();
    if (width === room) width = room - 2;
  }
  out.push(rest);
  return out.map((l, i) => (i === 0 ? l : `  ${l}`));
}

const count = (n: number | undefined) => (n === undefined ? undefined : `${formatCount(n)} (${n.toLocaleString("en-US")})`);

export function modelInfoText(info: ModelInfo): string {
  const m = info.model;
  const g = info.gguf;
  const h = info.hf;
  const a = g?.adapter;
  const o = info.onnx;
  return rows([
    ["name", m.name],
    ["format", o ? onnxFormatText(o) : a ? `gguf (LoRA adapter${a.kind !== "lora" ? `, ${a.kind}` : ""}: load it with --lora on its base model)` : m.format === "gptq" || m.format === "awq" ? `${m.format} (Hugging Face folder of ${m.format.toUpperCase()}-packed weights)` : h ? `${m.format} (Hugging Face ${h.weights === "none" ? "folder without weights" : h.weights})` : m.format],
    ["path", m.path],
    ["size", formatBytes(m.size)],
    ["architecture", g?.architecture ?? (h ? [h.architecture, h.modelType && h.architecture ? `(${h.modelType})` : h.modelType].filter(Boolean).join(" ") : undefined) ?? m.architecture],
    // A GPTQ/AWQ folder's count is already in weights, not packed int32 words (convert/hfFolder.ts weightCounts).
    ["parameters", count(g ? g.parameters : (h?.parameters ?? m.parameters))],
    ["quantization", quantizationText(info.quantization ?? m.quantization)],
    ["calibration", calibrationText(m.lineage)],
    ["pruned", pruneText(m.lineage)],
    ["distilled", distillText(m.lineage)],
    ["adapter base", a?.base],
    ["adapter rank", a?.rank === undefined ? undefined : Array.isArray(a.rank) ? a.rank.join(", ") : a.rank],
    ["adapter alpha", a?.alpha],
    ["adapter targets", a?.targets.join(", ")],
    ["context length", g?.contextLength ?? h?.contextLength ?? m.contextLength],
    ["file type", g?.fileType ?? m.quant],
    ["dtype", o ? undefined : h?.dtype],
    ["variants", o ? variantsText(o) : undefined],
    ["loads", o ? onnxLoadsText(o, m.dtype) : undefined],
    ["inputs", o ? ioText(o.inputs) : undefined],
    ["outputs", o ? ioText(o.outputs) : undefined],
    ["tensors", h?.tensors],
    ["layers", g?.blockCount ?? h?.layers],
    ["embedding", g?.embeddingLength ?? h?.hiddenSize],
    ["tokenizer", o && h?.tokenizer !== "tokenizer.json" ? `missing: no tokenizer.json, which the ONNX runtime needs${h?.tokenizer ? ` (has only ${h.tokenizer})` : ""}` : g?.tokenizer ? `${g.tokenizer}${g.vocabSize ? ` (${g.vocabSize} tokens)` : ""}` : h?.tokenizer ? `${h.tokenizer}${h.vocabSize ? ` (${h.vocabSize} tokens)` : ""}` : undefined],
    ["chat template", a ? undefined : g ? (g.hasChatTemplate ? "yes" : "no") : h ? (h.hasChatTemplate ? "yes" : "no") : undefined],
    ["splits", g && g.splitCount > 1 ? g.splitCount : undefined],
    ["LoRA adapters", m.adapters?.length ? m.adapters.map((x) => `${x.path}${x.scale !== 1 ? ` (scale ${x.scale})` : ""}`).join(", ") : undefined],
    ["also ONNX", info.alsoOnnx ? `${info.alsoOnnx.join(", ")} in onnx/ — described and run as ONNX when a dtype is asked for (${m.source.type === "local" ? m.path : m.name}:${info.alsoOnnx[0]}, or --dtype)` : undefined],
    ["runs as", info.converted ? `${info.converted.name} (GGUF converted from it${info.converted.current ? "" : `; stale: ${info.converted.changed?.join(", ")} changed since`}) ${info.converted.path}` : undefined],
    ["source", sourceText(m.source)],
    ["lineage", m.lineage.length === 0 ? "none (original)" : m.lineage.map((l) => `${l.method} of ${l.from}`).join(" ← ")],
  ]);
}

function onnxFormatText(o: OnnxSummary): string {
  return `onnx (${o.base === "decoder_model_merged" ? "older Optimum layout, onnx/decoder_model_merged*.onnx" : "Optimum / transformers.js layout, onnx/model*.onnx"})`;
}

/** Which variant a run loads: the one asked for, else the default (another by NAME:dtype or --dtype). */
function onnxLoadsText(o: OnnxSummary, asked: string | undefined): string {
  if (asked) return `${asked} (asked for)`;
  return o.defaultDtype ? `${o.defaultDtype} (another with NAME:dtype or --dtype)` : "no variant";
}

/** One line per variant: dtype, file, size (with external data), opsets; a variant that cannot be read says why. */
function variantsText(o: OnnxSummary): string {
  if (o.variants.length === 0) return "none";
  const width = Math.max(...o.variants.map((v) => v.dtype.length));
  const fileWidth = Math.max(...o.variants.map((v) => v.file.length));
  return o.variants
    .map((v) => {
      const ext = v.externalData.length ? ` + ${v.externalData.map((e) => `${e.file.replace(/^onnx\//, "")} ${formatBytes(e.size)}`).join(", ")} external data` : "";
      const ops = v.error ? `unreadable: ${v.error}` : `opset ${v.opset ?? "?"}${v.extraOpsets.map((x) => `, ${x.domain} ${x.version}`).join("")}`;
      return `${v.dtype.padEnd(width)}  ${v.file.padEnd(fileWidth)}  ${formatBytes(v.size)}${ext}  ${ops}${v.dtype === o.defaultDtype ? "  (default)" : ""}`;
    })
    .join("\n");
}

/** Inputs or outputs, one per line; the per-layer KV-cache tensors folded into one line ("past_key_values.{0..3}.{key,value}"). */
export function ioText(list: OnnxValueInfo[]): string {
  const lines: string[] = [];
  const folded = new Map<string, { layers: Set<number>; parts: Set<string>; first: OnnxValueInfo }>();
  for (const v of list) {
    const m = /^(.*)\.(\d+)\.(key|value)$/.exec(v.name);
    if (!m) {
      lines.push(`${v.name} ${v.type} [${v.shape.join(", ")}]`);
      continue;
    }
    const group = folded.get(m[1]!) ?? { layers: new Set(), parts: new Set(), first: v };
    if (!folded.has(m[1]!)) {
      folded.set(m[1]!, group);
      lines.push(`\0${m[1]}`);
    }
    group.layers.add(Number(m[2]));
    group.parts.add(m[3]!);
  }
  return lines
    .map((l) => {
      if (!l.startsWith("\0")) return l;
      const g = folded.get(l.slice(1))!;
      const layers = [...g.layers].sort((x, y) => x - y);
      return `${l.slice(1)}.{${layers[0]}..${layers.at(-1)}}.{${[...g.parts].join(",")}} ${g.first.type} [${g.first.shape.join(", ")}]`;
    })
    .join("\n");
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

/** The calibration data of the latest GPTQ/AWQ/prune step in a model's lineage: file, form and content hash. */
function calibrationText(lineage: readonly LineageStep[]): string | undefined {
  const step = lineage.find((l) => l.method === "gptq" || l.method === "awq" || l.method === "prune-layers" || l.method === "prune-ffn");
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
