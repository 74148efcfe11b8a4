import { UsageError } from "../errors.js";
import { seededRandom } from "../random.js";

/**
 * A reproducible held-out split: a seeded shuffle (mulberry32 + Fisher–Yates), so the same seed picks
 * the same validation examples on every run and a resumed run evaluates on what the first one did.
 */
export function splitHoldout<T>(items: readonly T[], fraction: number, seed: number): { train: T[]; held: T[] } {
  if (!(fraction > 0 && fraction < 1)) throw new UsageError(`--val-split must be a fraction between 0 and 1 (got ${fraction}).`);
  const held = Math.round(items.length * fraction);
  if (held < 1 || held >= items.length) {
    throw new UsageError(`--val-split ${fraction} of ${items.length} example(s) leaves ${held === 0 ? "no validation example" : "nothing to train on"}.`, { hint: "Use a larger dataset or give --eval-data FILE." });
  }
  const order = items.map((_, i) => i);
  const rand = seededRandom(seed);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const heldSet = new Set(order.slice(0, held));
  // Both parts keep the file's order: only membership is random.
  return { train: items.filter((_, i) => !heldSet.has(i)), held: items.filter((_, i) => heldSet.has(i)) };
}
