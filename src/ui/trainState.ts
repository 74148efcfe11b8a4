import type { SlmEvent } from "../core/events.js";
import { formatCount, formatDuration } from "../core/format.js";

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

/** Seconds left at the current rate; undefined until there is a rate and a total. */
export function etaSeconds(s: TrainState): number | undefined {
  if (s.step === undefined || !s.total || !s.rate || s.rate <= 0) return undefined;
  return Math.max(0, (s.total - s.step) / s.rate);
}

/** "step 120/1500 (8%)  3.2 steps/s  12.4K tokens/s  ETA 7m10s  GPU 12.3 GiB" */
export function speedLine(s: TrainState): string {
  const parts: string[] = [];
  if (s.step !== undefined) parts.push(s.total ? `step ${s.step}/${s.total} (${Math.floor((s.step / s.total) * 100)}%)` : `step ${s.step}`);
  if (s.rate) parts.push(`${s.rate >= 10 ? s.rate.toFixed(0) : s.rate.toFixed(2)} steps/s`);
  if (s.tokensPerS) parts.push(`${formatCount(Math.round(s.tokensPerS))} tokens/s`);
  const eta = etaSeconds(s);
  if (eta !== undefined && s.step! < s.total!) parts.push(`ETA ${formatDuration(eta)}`);
  if (s.gpuMemGib !== undefined) parts.push(`GPU ${s.gpuMemGib.toFixed(1)} GiB`);
  return parts.join("  ");
}

/** "loss 0.4123 (best 0.3980)  eval 0.4500  lr 1.80e-4  grad 0.93" */
export function lossLine(s: TrainState): string {
  const parts: string[] = [];
  const last = s.loss[s.loss.length - 1];
  if (last) parts.push(`loss ${last.value.toFixed(4)} (best ${Math.min(...s.loss.map((l) => l.value)).toFixed(4)})`);
  const ev = s.evalLoss[s.evalLoss.length - 1];
  if (ev) parts.push(`eval ${ev.value.toFixed(4)}`);
  if (s.lr !== undefined) parts.push(`lr ${s.lr.toExponential(2)}`);
  if (s.gradNorm !== undefined) parts.push(`grad ${s.gradNorm.toFixed(2)}`);
  return parts.join("  ");
}
