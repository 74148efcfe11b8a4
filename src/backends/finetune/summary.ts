import path from "node:path";
import type { DatasetFormat, Example } from "../../core/datasets/formats.js";
import { CancelledError, UsageError } from "../../core/errors.js";
import { emit, withStep, type BackendContext } from "../../core/events.js";
import { getRuntime } from "../llama/runtime.js";
import type { FinetunePlan } from "./plan.js";
import { type ChatTemplate, ggufChatTemplate, hfChatTemplate, renderExample } from "./template.js";

/** Token lengths of one dataset, as the model's tokenizer counts its rendered examples. */
export interface LengthStats {
  count: number;
  tokens: number;
  min: number;
  median: number;
  p95: number;
  max: number;
  /** Examples longer than --max-seq-len: the recipe truncates them. */
  overMaxSeqLen: number;
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export function lengthStats(lengths: readonly number[], maxSeqLen: number): LengthStats {
  const sorted = [...lengths].sort((a, b) => a - b);
  if (sorted.length === 0) return { count: 0, tokens: 0, min: 0, median: 0, p95: 0, max: 0, overMaxSeqLen: 0 };
  return {
    count: sorted.length,
    tokens: sorted.reduce((a, b) => a + b, 0),
    min: sorted[0]!,
    median: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    max: sorted[sorted.length - 1]!,
    overMaxSeqLen: sorted.filter((n) => n > maxSeqLen).length,
  };
}

/**
 * Renders every example and counts its tokens with the base GGUF's own vocabulary (node-llama-cpp,
 * vocabulary only: no weights are read). Special-token texts in the rendering (`<s>`, `<|user|>`…)
 * count as the single tokens they are.
 */
export async function countTokens(ggufPath: string, template: ChatTemplate | undefined, sets: readonly (readonly Example[])[], ctx: BackendContext = {}): Promise<number[][]> {
  const llama = await getRuntime("off");
  const model = await llama.loadModel({ modelPath: ggufPath, vocabOnly: true, loadSignal: ctx.signal });
  try {
    const special = { bos: model.tokens.bosString ?? undefined, eos: model.tokens.eosString ?? undefined };
    const total = sets.reduce((a, s) => a + s.length, 0);
    let done = 0;
    let lastReport = 0;
    const out: number[][] = [];
    for (const set of sets) {
      const lengths: number[] = [];
      for (const e of set) {
        lengths.push(model.tokenize(await renderExample(template, e, special), true).length);
        done++;
        if (done - lastReport >= 2000 || done === total) {
          if (ctx.signal?.aborted) throw new CancelledError();
          lastReport = done;
          emit(ctx.onEvent, { type: "progress", id: "data", unit: "examples", current: done, total });
        }
      }
      out.push(lengths);
    }
    return out;
  } finally {
    await model.dispose();
  }
}

export interface DataStats extends LengthStats {
  file: string;
  format: DatasetFormat;
  sha256: string;
}

export interface DataSummary {
  train: DataStats;
  eval: DataStats | null;
  maxSeqLen: number;
  /** Where the chat template came from; null when the data has no conversations to render. */
  template: string | null;
}

export const usesChat = (p: FinetunePlan) => [p.train, p.eval].some((d) => d?.format && ["messages", "alpaca", "sharegpt"].includes(d.format));

/**
 * The template training renders conversations with: the base GGUF's own (what `slm run` will use with
 * the adapter), else the HF tokenizer's (which the converted GGUF carries anyway).
 */
export function chooseTemplate(gguf: string | undefined, hf: string | undefined, ctx: BackendContext = {}): ChatTemplate | undefined {
  const fromGguf = gguf ? ggufChatTemplate(gguf) : undefined;
  const fromHf = hf ? hfChatTemplate(hf) : undefined;
  if (fromGguf && fromHf && fromGguf.template.trim() !== fromHf.template.trim()) {
    emit(ctx.onEvent, { type: "log", level: "warn", message: `The base GGUF's chat template differs from the HF tokenizer's (${fromHf.source}); training uses the GGUF's, which is what slm run uses.` });
  }
  return fromGguf ?? fromHf;
}

/** Renders and counts every example; the detail line is the data summary the views show. */
export async function summariseData(plan: FinetunePlan, gguf: string, template: ChatTemplate | undefined, maxSeqLen: number, ctx: BackendContext = {}): Promise<DataSummary> {
  if (usesChat(plan) && !template) {
    throw new UsageError(`${plan.base.name} has no chat template, so conversations cannot be rendered for it.`, {
      hint: 'Use {"prompt","completion"} or {"text"} data with a base model, or fine-tune an instruct/chat model.',
    });
  }
  const sets = plan.eval ? [plan.train, plan.eval] : [plan.train];
  const title = `Reading the data (${path.basename(plan.train.file)}${plan.eval ? `, ${plan.request.valSplit !== undefined ? `${plan.request.valSplit} held out` : path.basename(plan.eval.file)}` : ""})`;
  return withStep(ctx, "dataset", title, async () => {
    const counted = await countTokens(gguf, template, sets.map((s) => s.examples), ctx);
    const stats = sets.map((s, i): DataStats => ({ file: s.file, format: s.format, sha256: s.sha256, ...lengthStats(counted[i]!, maxSeqLen) }));
    const summary: DataSummary = { train: stats[0]!, eval: stats[1] ?? null, maxSeqLen, template: usesChat(plan) ? template!.source : null };
    const over = summary.train.overMaxSeqLen + (summary.eval?.overMaxSeqLen ?? 0);
    if (over > 0) emit(ctx.onEvent, { type: "log", level: "warn", message: `${over} example(s) are longer than --max-seq-len ${maxSeqLen} tokens and will be cut short.` });
    return summary;
  }, describeData);
}

export function describeData(d: DataSummary): string {
  const t = d.train;
  const n = (s: LengthStats) => s.count.toLocaleString("en-US");
  return [
    `${n(t)} training${d.eval ? ` + ${n(d.eval)} evaluation` : ""} examples (${t.format}${d.template ? `, chat template from ${d.template}` : ""})`,
    `tokens min ${t.min} · median ${t.median} · p95 ${t.p95} · max ${t.max}, ${t.tokens.toLocaleString("en-US")} in all`,
    `${t.overMaxSeqLen + (d.eval?.overMaxSeqLen ?? 0)} over --max-seq-len ${d.maxSeqLen}`,
  ].join("; ");
}
