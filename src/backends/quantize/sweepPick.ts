/**
 * How a quantization sweep picks: which types are Pareto-optimal, and which one it recommends. Pure
 * functions over the measured figures, so the rule can be tested without a model.
 */

export interface Candidate {
  /** Bytes on disk: smaller is better. */
  size: number;
  /** Mean KL divergence from the source: lower is better. */
  kld: number;
  /** One score per task (accuracy or acc), in the order of `SweepRule.sourceScores`: higher is better. */
  scores: number[];
}

export interface SweepRule {
  /** A type qualifies when its mean KLD is under this… */
  maxKld: number;
  /** …or when every task score is at most this much (absolute) below the source's. */
  maxDrop: number;
  /** The source's score on each task; empty without --task (then only the KLD rule applies). */
  sourceScores: number[];
}

/** Which part of the rule a candidate met. */
export interface Verdict {
  kld: boolean;
  /** Undefined without tasks. */
  tasks?: boolean;
  qualifies: boolean;
}

// Accuracies are ratios of small counts: compare with a tolerance so 0.95 - 0.02 vs 0.93 is not a coin toss.
const EPS = 1e-9;

/** a dominates b: no worse on every objective and better on at least one. */
function dominates(a: Candidate, b: Candidate): boolean {
  const diffs = [b.size - a.size, b.kld - a.kld, ...a.scores.map((s, i) => s - b.scores[i]!)];
  return diffs.every((d) => d >= -EPS) && diffs.some((d) => d > EPS);
}

/** Pareto-optimal flags: no other candidate is at least as small, as close to the source and as good on every task, and strictly better on one. */
export function paretoFront(cs: readonly Candidate[]): boolean[] {
  return cs.map((c, i) => !cs.some((o, j) => j !== i && dominates(o, c)));
}

export function verdict(c: Candidate, rule: SweepRule): Verdict {
  const kld = c.kld < rule.maxKld;
  if (rule.sourceScores.length === 0) return { kld, qualifies: kld };
  const tasks = rule.sourceScores.every((s, i) => c.scores[i]! >= s - rule.maxDrop - EPS);
  return { kld, tasks, qualifies: kld || tasks };
}

/** Index of the smallest qualifying candidate (ties: the lower KLD), or undefined when none qualifies. */
export function recommend(cs: readonly Candidate[], rule: SweepRule): number | undefined {
  let best: number | undefined;
  cs.forEach((c, i) => {
    if (!verdict(c, rule).qualifies) return;
    const b = best === undefined ? undefined : cs[best]!;
    if (!b || c.size < b.size || (c.size === b.size && c.kld < b.kld)) best = i;
  });
  return best;
}

/** Index of the candidate closest to the source (lowest KLD): what `--keep best` keeps when nothing qualifies. */
export function closest(cs: readonly Candidate[]): number | undefined {
  let best: number | undefined;
  cs.forEach((c, i) => {
    if (best === undefined || c.kld < cs[best]!.kld) best = i;
  });
  return best;
}
