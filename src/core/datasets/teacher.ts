/**
 * The teacher's top-K log-probabilities that a distillation dataset carries with each answer (the
 * `teacher` field of `slm distill --kd-logprobs K`): one entry per token the teacher generated for
 * the answer, in order. Log-probs are natural logs of the teacher's full softmax at temperature 1;
 * the fine-tune recipe renormalises them over the K tokens (docs/distill.md, "KD loss").
 */
export interface TeacherLogprobs {
  tokens: number[];
  top_ids: number[][];
  top_logprobs: number[][];
}

const isId = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0;
// A log-probability is at most 0; a little above it is rounding.
const isLogprob = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v) && v <= 1e-6;

/** The field checked whole, or the first problem with it (for the caller's file-and-line error). */
export function parseTeacher(v: unknown): TeacherLogprobs | string {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return '"teacher" must be an object {"tokens","top_ids","top_logprobs"}';
  const t = v as Record<string, unknown>;
  const { tokens, top_ids: ids, top_logprobs: lps } = t;
  if (!Array.isArray(tokens) || tokens.length === 0) return '"teacher.tokens" must be a non-empty array of token ids';
  if (!Array.isArray(ids) || !Array.isArray(lps) || ids.length !== tokens.length || lps.length !== tokens.length) {
    return '"teacher.tokens", "teacher.top_ids" and "teacher.top_logprobs" must be arrays of the same length (one entry per answer token)';
  }
  for (let j = 0; j < tokens.length; j++) {
    if (!isId(tokens[j])) return `"teacher.tokens[${j}]" is not a token id`;
    const row = ids[j] as unknown;
    const lpRow = lps[j] as unknown;
    if (!Array.isArray(row) || row.length === 0 || !row.every(isId)) return `"teacher.top_ids[${j}]" must be a non-empty array of token ids`;
    if (!Array.isArray(lpRow) || lpRow.length !== row.length || !lpRow.every(isLogprob)) {
      return `"teacher.top_logprobs[${j}]" must hold one log-probability (a number ≤ 0) per id of "teacher.top_ids[${j}]"`;
    }
  }
  return { tokens: tokens as number[], top_ids: ids as number[][], top_logprobs: lps as number[][] };
}
