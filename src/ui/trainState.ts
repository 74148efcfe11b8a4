import type { SlmEvent } from "../core/events.js";
import { formatCount, formatDuration } from "../core/format.js";
import type { LineField } from "./layout.js";
import { etaSeconds as eta } from "./progress.js";

/**
 * What a training run has reported so far, folded from the recipe's events (the fine-tune protocol:
 * progress of step "train" in steps, metrics loss / eval_loss / lr / grad_norm / tokens_per_s /
 * gpu_mem_gib). The Ink view and the plain writer both read it.
 */
export interface TrainState {
  loss: { step: number; value: number }[];
  evalLoss: { step: number; value: number }[];
  step?: number;
  total?: number;
  /** Optimizer steps per second. */
  rate?: number;
  lr?: number;
  gradNorm?: number;
  tokensPerS?: number;
  gpuMemGib?: number;
  peakGpuMemGib?: number;
  startedAt?: number;
  lastTs?: number;
}

export const emptyTrainState = (): TrainState => ({ loss: [], evalLoss: [] });

/** The new state when `e` is about training; undefined when it is not (the caller handles it). */
export function foldTrain(s: TrainState, e: SlmEvent): TrainState | undefined {
  if (e.type === "progress" && e.id === "train") {
    return { ...s, step: e.current, total: e.total ?? s.total, rate: e.rate ?? s.rate, startedAt: s.startedAt ?? e.ts, lastTs: e.ts };
  }
  if (e.type !== "metric") return undefined;
  const step = e.step ?? s.step ?? 0;
  switch (e.name) {
    case "loss":
      return { ...s, loss: [...s.loss, { step, value: e.value }], lastTs: e.ts };
    case "eval_loss":
      return { ...s, evalLoss: [...s.evalLoss, { step, value: e.value }] };
    case "lr":
      return { ...s, lr: e.value };
    case "grad_norm":
      return { ...s, gradNorm: e.value };
    case "tokens_per_s":
      return { ...s, tokensPerS: e.value };
    case "gpu_mem_gib":
      return { ...s, gpuMemGib: e.value, peakGpuMemGib: Math.max(s.peakGpuMemGib ?? 0, e.value) };
    default:
      return undefined;
  }
}

/** Seconds left at the current rate, by the rule every estimate follows (ui/progress.ts). */
export function etaSeconds(s: TrainState): number | undefined {
  if (s.step === undefined) return undefined;
  const elapsed = s.startedAt !== undefined && s.lastTs !== undefined ? (s.lastTs - s.startedAt) / 1000 : undefined;
  return eta(s.step, s.total, s.rate, elapsed);
}

/** The speed line's fields, most useful first; the live view drops the last ones on a narrow terminal. */
export function speedFields(s: TrainState): LineField[] {
  const left = etaSeconds(s);
  return [
    { key: "step", priority: Infinity, text: s.step === undefined ? "" : s.total ? `step ${s.step}/${s.total} (${Math.floor((s.step / s.total) * 100)}%)` : `step ${s.step}` },
    { key: "rate", priority: 40, text: s.rate ? `${s.rate >= 10 ? s.rate.toFixed(0) : s.rate.toFixed(2)} steps/s` : "" },
    { key: "tokens", priority: 45, text: s.tokensPerS ? `${formatCount(Math.round(s.tokensPerS))} tokens/s` : "" },
    { key: "eta", priority: 30, text: left !== undefined ? `ETA ${formatDuration(left)}` : "" },
    { key: "gpu", priority: 35, text: s.gpuMemGib !== undefined ? `GPU ${s.gpuMemGib.toFixed(1)} GiB` : "" },
  ];
}

/** The loss line's fields: the last and best loss stay, then the eval loss, the gradient norm, the learning rate. */
export function lossFields(s: TrainState): LineField[] {
  const last = s.loss[s.loss.length - 1];
  const ev = s.evalLoss[s.evalLoss.length - 1];
  return [
    { key: "loss", priority: Infinity, text: last ? `loss ${last.value.toFixed(4)} (best ${Math.min(...s.loss.map((l) => l.value)).toFixed(4)})` : "" },
    { key: "eval", priority: 70, text: ev ? `eval ${ev.value.toFixed(4)}` : "" },
    { key: "lr", priority: 30, text: s.lr !== undefined ? `lr ${s.lr.toExponential(2)}` : "" },
    { key: "grad", priority: 40, text: s.gradNorm !== undefined ? `grad ${s.gradNorm.toFixed(2)}` : "" },
  ];
}

const joined = (fields: LineField[]) =>
  fields
    .map((f) => f.text)
    .filter(Boolean)
    .join("  ");

/** "step 120/1500 (8%)  3.2 steps/s  12.4K tokens/s  ETA 7m10s  GPU 12.3 GiB" */
export const speedLine = (s: TrainState): string => joined(speedFields(s));

/** "loss 0.4123 (best 0.3980)  eval 0.4500  lr 1.80e-4  grad 0.93" */
export const lossLine = (s: TrainState): string => joined(lossFields(s));
