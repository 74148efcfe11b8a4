"""Training data: JSONL records → token ids + loss labels, truncation, packing, batching. Pure Python (no torch),
so it is tested with a stand-in tokenizer; the real one is a transformers tokenizer, used only through
`apply_chat_template(..., tokenize=False)`, `encode(text, add_special_tokens=...)` and its special-token ids.

Record shapes (written by slm's TypeScript side, one per line):
  {"messages": [{"role", "content"}...]}  rendered with the chat template; loss on assistant turns only
  {"prompt": str, "completion": str}      raw text, no template; loss on the completion only
  {"text": str}                           raw text; loss on every token
`train_on_prompt` puts the loss on every token of the first two shapes as well. The first two may carry a
`teacher` field (teacher.py): the teacher's top-K log-probabilities for the answer's tokens, for token-level
distillation; `encode_all(..., teacher=True)` lines them up with the last answer's tokens.

Labels are aligned with input ids (label[i] is token i, or IGNORE); the loss shifts them by one. The first token
of every example is IGNORE: nothing before it in the same example predicts it, which also keeps a packed
sequence from learning to predict one document's first token from the previous document."""
import json
import random
from dataclasses import dataclass, field

from . import teacher as kd_teacher
from .errors import ConfigError

IGNORE = -100


@dataclass
class Example:
    ids: list
    labels: list
    positions: list = None  # only for packed sequences: restart at 0 at each document
    kd: list = None  # token-level KD: per position the teacher's (top_ids, top_logprobs) for that token, or None


@dataclass
class DataStats:
    examples: int = 0
    truncated: int = 0
    dropped: int = 0  # no loss token left after truncation
    inexact_masks: int = 0  # chat template whose prefix renders do not tokenize as a prefix of the whole
    tokens: int = 0
    loss_tokens: int = 0
    longest: int = 0
    kinds: dict = field(default_factory=dict)
    kd_examples: int = 0  # examples whose answer tokens carry the teacher's distribution
    kd_misaligned: int = 0  # examples with a teacher field whose tokens do not line up: cross-entropy only


def read_jsonl(path):
    records = []
    # utf-8-sig: a byte-order mark some editors put first is not part of the first line's JSON.
    with open(path, encoding="utf-8-sig") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}:{n}: not JSON ({e.msg})") from None
            if not isinstance(rec, dict) or not ({"messages", "text"} & rec.keys() or {"prompt", "completion"} <= rec.keys()):
                raise ConfigError(f"{path}:{n}: expected {{\"messages\"}}, {{\"prompt\",\"completion\"}} or {{\"text\"}}")
            if "teacher" in rec:
                if "text" in rec and "messages" not in rec and "prompt" not in rec:
                    raise ConfigError(f"{path}:{n}: a teacher field needs an answer: a messages or prompt/completion record")
                kd_teacher.check(rec["teacher"], f"{path}:{n}")
            records.append(rec)
    if not records:
        raise ConfigError(f"{path}: no examples")
    return records


def _common_prefix(a, b):
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class Encoder:
    def __init__(self, tokenizer, chat_template=None, train_on_prompt=False):
        self.tok = tokenizer
        self.template = chat_template
        self.train_on_prompt = train_on_prompt
        self.eos = getattr(tokenizer, "eos_token_id", None)
        self.has_template = bool(chat_template or getattr(tokenizer, "chat_template", None))

    def _render(self, messages, generation_prompt):
        kwargs = {"tokenize": False, "add_generation_prompt": generation_prompt}
        if self.template:
            kwargs["chat_template"] = self.template
        return self.tok.apply_chat_template(messages, **kwargs)

    def _ids(self, text, special):
        return list(self.tok.encode(text, add_special_tokens=special))

    def _messages(self, messages, stats):
        if not self.has_template:
            raise ConfigError("the base model's tokenizer has no chat template: pass one (chat_template), "
                              "or use {\"prompt\",\"completion\"} or {\"text\"} data")
        # The rendered text already holds the template's special tokens (BOS and all), so no more are added,
        # exactly as apply_chat_template(tokenize=True) does.
        ids = self._ids(self._render(messages, False), False)
        labels = [IGNORE] * len(ids)
        inexact = False
        span = None
        for i, m in enumerate(messages):
            if m.get("role") != "assistant":
                continue
            # The assistant's tokens are those between the conversation rendered up to the turn before (with
            # the generation prompt, e.g. "<|assistant|>") and the conversation rendered through this turn
            # (with its end-of-turn token). Rendering prefixes copes with any template; the common-prefix
            # length copes with a tokenizer that merges across the boundary.
            before = self._ids(self._render(messages[:i], True), False)
            through = self._ids(self._render(messages[: i + 1], False), False)
            start, end = _common_prefix(before, ids), _common_prefix(through, ids)
            inexact |= start < len(before) or end < len(through)
            labels[start:end] = ids[start:end]
            span = (start, end)
        if self.train_on_prompt:
            return ids, list(ids), span
        stats.inexact_masks += inexact
        return ids, labels, span

    def encode(self, rec, stats):
        ids, labels, _ = self.encode_with_answer(rec, stats)
        return ids, labels

    def encode_with_answer(self, rec, stats):
        """(ids, labels, (start, end) of the last answer's tokens, or None for text)."""
        span = None
        if "messages" in rec:
            kind = "messages"
            ids, labels, span = self._messages(rec["messages"], stats)
        elif "prompt" in rec:
            kind = "prompt_completion"
            p = self._ids(rec["prompt"], True)
            if self.eos is not None and p and p[-1] == self.eos:
                p = p[:-1]  # a tokenizer that appends EOS to every text must not end the prompt with it
            c = self._ids(rec["completion"], False)
            if self.eos is not None:
                c.append(self.eos)
            ids = p + c
            span = (len(p), len(ids))
            labels = list(ids) if self.train_on_prompt else [IGNORE] * len(p) + c
        else:
            kind = "text"
            ids = self._ids(rec["text"], True)
            if self.eos is not None and (not ids or ids[-1] != self.eos):
                ids.append(self.eos)
            labels = list(ids)
        stats.kinds[kind] = stats.kinds.get(kind, 0) + 1
        if labels:
            labels[0] = IGNORE
        return ids, labels, span


def encode_all(records, encoder, max_seq_len, teacher=False):
    """Encodes, truncates to max_seq_len (from the right) and drops examples with no loss token left. With
    `teacher`, records' teacher fields are lined up with their answers' tokens (Example.kd); one that does not
    line up is counted (stats.kd_misaligned) and trains on cross-entropy alone."""
    stats = DataStats()
    out = []
    for rec in records:
        ids, labels, span = encoder.encode_with_answer(rec, stats)
        kd = None
        if teacher and "teacher" in rec:
            kd = kd_teacher.align(ids, span, rec["teacher"]) if span else None
            if kd is None:
                stats.kd_misaligned += 1
            else:
                stats.kd_examples += 1
        if len(ids) > max_seq_len:
            stats.truncated += 1
            ids, labels = ids[:max_seq_len], labels[:max_seq_len]
            kd = kd[:max_seq_len] if kd else kd
        n_loss = sum(1 for t in labels if t != IGNORE)
        if n_loss == 0:
            stats.dropped += 1
            continue
        stats.examples += 1
        stats.tokens += len(ids)
        stats.loss_tokens += n_loss
        stats.longest = max(stats.longest, len(ids))
        out.append(Example(ids, labels, kd=kd))
    return out, stats


def pack(examples, max_seq_len, seed):
    """Concatenates examples (in a seeded random order, greedily) into sequences of at most max_seq_len tokens.
    Each keeps its own position ids (0, 1, … restarting per document). transformers turns position ids that
    restart into a block-diagonal ("document") attention mask when no attention_mask is passed (its
    find_packed_sequence_indices), so documents in one sequence do not attend to each other; flash-attention
    kernels use the same position ids for varlen attention."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    packs, cur = [], None
    for i in order:
        ex = examples[i]
        if cur is None or len(cur.ids) + len(ex.ids) > max_seq_len:
            cur = Example([], [], [])
            packs.append(cur)
        cur.ids += ex.ids
        cur.labels += ex.labels
        cur.positions += range(len(ex.ids))
        if ex.kd is not None or cur.kd is not None:
            # Positions before this document (or of one without a teacher) have no teacher entry.
            cur.kd = (cur.kd or [None] * (len(cur.ids) - len(ex.ids))) + (ex.kd or [None] * len(ex.ids))
    return packs


def epoch_batches(n_items, batch_size, seed, epoch):
    """The batches of one epoch: a permutation that depends only on (seed, epoch), so a resumed run sees the
    same order without storing it."""
    order = list(range(n_items))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return [order[i : i + batch_size] for i in range(0, n_items, batch_size)]


def collate(items, pad_id):
    """Right-pads a batch to its longest item. Returns plain lists: input_ids, labels, and either
    attention_mask (unpacked) or position_ids (packed; no mask, so the document mask is derived from them); and
    when any item carries a teacher, kd_ids / kd_logprobs [batch, width, K] and kd_mask [batch, width]
    (teacher.collate_rows), aligned with the labels."""
    width = max(len(x.ids) for x in items)
    packed = items[0].positions is not None
    batch = {"input_ids": [], "labels": [], "position_ids" if packed else "attention_mask": []}
    for x in items:
        pad = width - len(x.ids)
        batch["input_ids"].append(x.ids + [pad_id] * pad)
        batch["labels"].append(x.labels + [IGNORE] * pad)
        if packed:
            # Padding becomes one more "document" of its own, attending only to itself, with no loss.
            batch["position_ids"].append(list(x.positions) + list(range(pad)))
        else:
            batch["attention_mask"].append([1] * len(x.ids) + [0] * pad)
    if any(x.kd is not None for x in items):
        k = kd_teacher.widest(x.kd for x in items)
        rows = [kd_teacher.collate_rows(x.kd, width, k) for x in items]
        batch["kd_ids"], batch["kd_logprobs"], batch["kd_mask"] = (list(r) for r in zip(*rows))
    return batch


def real_tokens(items):
    return sum(len(x.ids) for x in items)


def loss_tokens(items):
    """Positions whose next token is learned (labels after the shift by one): what train_step.to_device counts
    in a collated batch, whose padding is never learned."""
    return sum(1 for x in items for t in x.labels[1:] if t != IGNORE)
