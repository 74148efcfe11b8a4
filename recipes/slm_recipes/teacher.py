"""The teacher's top-K log-probabilities that a token-level distillation record carries (`teacher` field, written
by `slm distill --kd-logprobs K`), checked and lined up with the student's tokens. Pure Python (no torch).

    {"messages": [..., {"role": "assistant", "content": ANSWER}], "teacher": T}   or   {"prompt", "completion", "teacher"}
    T = {"tokens": [id...], "top_ids": [[id × K]...], "top_logprobs": [[float × K]...]}

one entry per token the teacher generated for ANSWER, in order (its end-of-generation token last when it stopped
on one); log-probs are natural logs of the teacher's full softmax at temperature 1, not renormalised."""
import math

from .errors import ConfigError


def check(t, where):
    """Raises ConfigError naming `where` (file:line) unless `t` has the shape above; returns it."""
    def bad(what):
        return ConfigError(f"{where}: teacher: {what}")

    if not isinstance(t, dict) or not {"tokens", "top_ids", "top_logprobs"} <= t.keys():
        raise bad('expected an object with "tokens", "top_ids" and "top_logprobs"')
    tokens, ids, lps = t["tokens"], t["top_ids"], t["top_logprobs"]
    if not isinstance(tokens, list) or not tokens:
        raise bad('"tokens" must be a non-empty list of token ids')
    if not isinstance(ids, list) or not isinstance(lps, list) or not len(tokens) == len(ids) == len(lps):
        raise bad('"tokens", "top_ids" and "top_logprobs" must be lists of the same length (one entry per token)')
    for j, (tok, row_ids, row_lps) in enumerate(zip(tokens, ids, lps)):
        if not _is_id(tok):
            raise bad(f"tokens[{j}] is not a token id")
        if not isinstance(row_ids, list) or not row_ids or not all(_is_id(i) for i in row_ids):
            raise bad(f"top_ids[{j}] must be a non-empty list of token ids")
        if not isinstance(row_lps, list) or len(row_lps) != len(row_ids) or not all(_is_logprob(v) for v in row_lps):
            raise bad(f"top_logprobs[{j}] must hold one log-probability (a number <= 0) per id of top_ids[{j}]")
    return t


def _is_id(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _is_logprob(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v) and v <= 1e-6


def align(ids, answer, t):
    """Per position of `ids`, the teacher's (top_ids, top_logprobs) for that token, or None; or None as a whole
    when the teacher's tokens are not the first tokens of the answer span `answer` = (start, end) (another
    tokenizer, a template that renders the answer differently, an answer edited after generation). Tokens of
    the span past the teacher's (e.g. a template's end-of-turn that the teacher did not generate) get none."""
    start, end = answer
    tokens = t["tokens"]
    if start + len(tokens) > end or list(ids[start : start + len(tokens)]) != list(tokens):
        return None
    out = [None] * len(ids)
    for j, (row_ids, row_lps) in enumerate(zip(t["top_ids"], t["top_logprobs"])):
        out[start + j] = (row_ids, row_lps)
    return out


def widest(kds):
    """K of a batch: the most entries any position of any item has."""
    return max((len(e[0]) for kd in kds if kd is not None for e in kd if e is not None), default=1)


def collate_rows(kd, width, k):
    """One item's per-position teacher entries → (ids rows, log-prob rows, mask) padded to `width` positions and
    `k` columns; a missing column is id 0 at log-prob -inf (no teacher mass), a missing position is all of those
    and False in the mask (cross-entropy only there)."""
    rows_ids, rows_lps, mask = [], [], []
    for p in range(width):
        e = kd[p] if kd is not None and p < len(kd) else None
        if e is None:
            rows_ids.append([0] * k)
            rows_lps.append([-math.inf] * k)
            mask.append(False)
        else:
            pad = k - len(e[0])
            rows_ids.append(list(e[0]) + [0] * pad)
            rows_lps.append([float(v) for v in e[1]] + [-math.inf] * pad)
            mask.append(True)
    return rows_ids, rows_lps, mask
