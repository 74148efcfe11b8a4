/** How a generated answer is compared with the expected one(s). */
export type MatchMode = "exact" | "contains" | "regex";
export const MATCH_MODES: readonly MatchMode[] = ["exact", "contains", "regex"];

/**
 * Normalisation before exact and contains matching: Unicode NFKC, lower case, runs of whitespace as
 * one space, no leading or trailing whitespace, and no trailing punctuation (. , ; : ! ? and the CJK
 * full stop), so "Paris." matches "paris" and " 46\n" matches "46". Inner punctuation stays: "3.5" is
 * not "35".
 */
export function normalise(text: string): string {
  return text
    .normalize("NFKC")
    .toLowerCase()
    .replace(/\s+/g, " ")
    .trim()
    .replace(/[\s.,;:!?。]+$/u, "");
}

/** `/pattern/flags`, or a bare pattern (case-sensitive); either is searched anywhere in the output. */
export function compileRegex(answer: string): RegExp {
  const m = /^\/(.*)\/([dgimsuvy]*)$/s.exec(answer);
  return m ? new RegExp(m[1]!, m[2]!.replace("g", "")) : new RegExp(answer);
}

export function isCorrect(output: string, answers: readonly string[], mode: MatchMode): boolean {
  switch (mode) {
    case "exact": {
      const got = normalise(output);
      return answers.some((a) => normalise(a) === got);
    }
    case "contains": {
      const got = normalise(output);
      return answers.some((a) => got.includes(normalise(a)));
    }
    case "regex":
      return answers.some((a) => compileRegex(a).test(output.trim()));
  }
}

/** A share with its 95 % Wilson score interval (better than p ± 1.96·se near 0, 1 and for small n). */
export interface Proportion {
  value: number;
  low: number;
  high: number;
  n: number;
}

export function wilson(successes: number, n: number, z = 1.959964): Proportion {
  if (n === 0) return { value: 0, low: 0, high: 0, n };
  const p = successes / n;
  const z2 = z * z;
  const denom = 1 + z2 / n;
  const centre = (p + z2 / (2 * n)) / denom;
  const half = (z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / denom;
  return { value: p, low: Math.max(0, centre - half), high: Math.min(1, centre + half), n };
}

/**
 * Multiple-choice decisions from each choice's summed log-likelihood, as lm-evaluation-harness makes
 * them: `acc` takes the most likely choice, `acc_norm` the most likely per UTF-8 byte of the choice's
 * text (so long choices are not penalised for having more tokens). Ties go to the first choice.
 */
export function pickChoices(logLikelihoods: readonly number[], choices: readonly string[]): { acc: number; accNorm: number } {
  const argmax = (xs: readonly number[]) => xs.reduce((best, x, i) => (x > xs[best]! ? i : best), 0);
  return {
    acc: argmax(logLikelihoods),
    accNorm: argmax(logLikelihoods.map((ll, i) => ll / Math.max(1, Buffer.byteLength(choices[i]!, "utf8")))),
  };
}
