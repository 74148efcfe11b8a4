import { type DistributionReader, type DistributionRow, LN_FLOAT32_MIN, forEachRow, logProbOf } from "./logprobs.js";

/** What scoring needs of each output row of the last decode, for every reader (model) in lock-step. */
export interface RowMeasures {
  /** logprob[m][k]: ln p(targets[k]) under reader m's output k. */
  logprob: Float64Array[];
  /** top[m][k]: the most likely token of reader m's output k (the lowest id among equal maxima). */
  top: Int32Array[];
  /** kl[k]: KL(P_0 ‖ P_1) of output k of readers 0 and 1, over the whole vocabulary, when asked for. */
  kl?: Float64Array;
}

/**
 * KL(P_base ‖ P_model) of one position over the whole vocabulary, in float64:
 * Σ_i pb_i · (ln pb_i − ln q_i), with both rows renormalised (see logprobs.ts). Tokens the base gives
 * probability 0 contribute 0; a model probability that underflowed float32 is clamped to 2^-149.
 */
export function klDivergenceOfRows(base: DistributionRow, model: DistributionRow): number {
  const pb = base.probs;
  const q = model.probs;
  let sum = 0;
  let mass = 0;
  for (let i = 0; i < pb.length; i++) {
    const p = pb[i]!;
    if (p === 0) continue;
    const qi = q[i]!;
    sum += p * (qi > 0 ? Math.log(p / qi) : Math.log(p) - LN_FLOAT32_MIN);
    mass += p;
  }
  // With pb = Pb/Sb and q = Q/Sq: Σ pb (ln pb − ln q) = (1/Sb) Σ Pb ln(Pb/Q) − ln Sb + ln Sq.
  const kl = sum / mass - base.logNorm + model.logNorm;
  // Exact zero when the rows are identical; rounding must not make a divergence negative.
  return Math.max(0, kl);
}

/**
 * Measures every output of the readers' last decodes (all decoded with the same outputs): through
 * slm's native addon when every reader has it (a log-softmax in C++ over the logits, double
 * accumulation, ~0.3 ms a row at a 49k vocabulary), else through node-llama-cpp's sampler (exact, ~20 ms
 * a row). Rows must be those of each reader's last decode: call right after it.
 */
export async function measureOutputs(readers: readonly DistributionReader[], targets: Int32Array, withKl: boolean): Promise<RowMeasures> {
  const n = targets.length;
  const logprob = readers.map(() => new Float64Array(n));
  const top = readers.map(() => new Int32Array(n));
  const kl = withKl ? new Float64Array(n) : undefined;
  if (readers.every((r) => r.native)) {
    const indexes = readers.map((r) => r.outputIndexes());
    const [b, m] = readers as [DistributionReader, DistributionReader];
    // KL reads both rows once for everything: the divergence, both log-probabilities and both arg-maxes.
    if (kl) b.native!.addon.klRows(b.native!.handle, indexes[0]!, m.native!.handle, indexes[1]!, targets, kl, logprob[0]!, logprob[1]!, top[0]!, top[1]!);
    readers.forEach((r, i) => {
      if (!kl || i > 1) r.native!.addon.scoreRows(r.native!.handle, indexes[i]!, targets, logprob[i]!, top[i]!);
    });
    return { logprob, top, kl };
  }
  const slots = Math.min(...readers.map((r) => r.slots));
  await forEachRow(n, slots, async (k, slot) => {
    const rows = await Promise.all(readers.map((r) => r.row(k, slot)));
    rows.forEach((row, m) => {
      logprob[m]![k] = logProbOf(row, targets[k]!);
      top[m]![k] = row.top;
    });
    if (kl) kl[k] = klDivergenceOfRows(rows[0]!, rows[1]!);
  });
  return { logprob, top, kl };
}
