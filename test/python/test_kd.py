"""Token-level distillation in the fine-tune recipe: the teacher field's alignment with the student's tokens
(pure Python), and the KD loss against a direct computation of its formula (docs/distill.md, "KD loss"):

    loss = α · Σ_j p_T(k_j) (log p_T(k_j) − log q_S(k_j)) + (1 − α) · CE,   p_T = the teacher's top-K renormalised

Run with `python3 -m unittest discover -s test/python -p test_kd.py`."""
import math
import os
import random
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "recipes"))
sys.path.insert(0, os.path.dirname(__file__))

from fake_tokenizer import FakeTokenizer  # noqa: E402
from slm_recipes import data, teacher  # noqa: E402
from slm_recipes.errors import ConfigError  # noqa: E402

try:
    import jinja2  # noqa: F401
    HAS_JINJA = True
except ImportError:
    HAS_JINJA = False
try:
    import torch
except ImportError:
    torch = None

TOK = FakeTokenizer()


def tid(ch):
    """The stand-in tokenizer's id of one character."""
    return TOK.encode(ch, add_special_tokens=False)[0]


def teacher_for(answer, k=3, eos=True):
    """A teacher field for `answer` as slm distill writes it: its tokens (+ EOS), each with k ids, its own first."""
    toks = [tid(c) for c in answer] + ([TOK.eos_token_id] if eos else [])
    rng = random.Random(len(answer))
    ids = [[t] + [200 + rng.randrange(50) for _ in range(k - 1)] for t in toks]
    lps = [sorted((-rng.uniform(0.01, 5) for _ in range(k)), reverse=True) for _ in toks]
    return {"tokens": toks, "top_ids": ids, "top_logprobs": lps}


def chat(q, a, t=None):
    rec = {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
    if t is not None:
        rec["teacher"] = t
    return rec


@unittest.skipUnless(HAS_JINJA, "jinja2 is not installed")
class AlignmentTest(unittest.TestCase):
    def test_teacher_entries_sit_on_the_answer_tokens(self):
        t = teacher_for("46")
        (ex,), stats = data.encode_all([chat("12+34", "46", t)], data.Encoder(TOK), 64, teacher=True)
        self.assertEqual((stats.kd_examples, stats.kd_misaligned), (1, 0))
        at = [p for p, e in enumerate(ex.kd) if e is not None]
        # "4", "6", "</s>": the labelled tokens, in order, each with the teacher's row for that very token.
        self.assertEqual([ex.ids[p] for p in at], t["tokens"])
        self.assertEqual([ex.labels[p] for p in at], t["tokens"])
        self.assertEqual([ex.kd[p] for p in at], list(zip(t["top_ids"], t["top_logprobs"])))

    def test_prompt_completion_and_a_teacher_without_eos(self):
        t = teacher_for("cd", eos=False)
        (ex,), stats = data.encode_all([{"prompt": "ab", "completion": "cd", "teacher": t}], data.Encoder(TOK), 64,
                                       teacher=True)
        self.assertEqual(stats.kd_examples, 1)
        # The EOS the recipe appends has a label but no teacher entry: cross-entropy alone there.
        self.assertEqual([ex.ids[p] for p, e in enumerate(ex.kd) if e is not None], t["tokens"])
        self.assertEqual(ex.labels[-1], TOK.eos_token_id)
        self.assertIsNone(ex.kd[-1])

    def test_tokens_that_do_not_line_up_fall_back_to_cross_entropy(self):
        recs = [chat("1-1", "0", teacher_for("00")),  # one token more than the answer has
                chat("9-2", "7", teacher_for("8")),  # another answer than the record's
                chat("5-5", "0", {**teacher_for("0"), "tokens": [TOK.eos_token_id, tid("0")]}),  # out of order
                chat("3-1", "2", teacher_for("2"))]
        examples, stats = data.encode_all(recs, data.Encoder(TOK), 64, teacher=True)
        self.assertEqual((stats.kd_examples, stats.kd_misaligned), (1, 3))
        self.assertEqual([e.kd is not None for e in examples], [False, False, False, True])
        # Without teacher=True (no kd_alpha), the field is ignored.
        examples, stats = data.encode_all(recs, data.Encoder(TOK), 64)
        self.assertTrue(all(e.kd is None for e in examples))
        self.assertEqual(stats.kd_misaligned, 0)

    def test_truncation_packing_and_collation_keep_positions(self):
        a, b = chat("12+34", "46", teacher_for("46", k=2)), chat("1+1", "2", teacher_for("2", k=4))
        exs, _ = data.encode_all([a, b, chat("2+2", "4")], data.Encoder(TOK), 64, teacher=True)
        packed = data.pack(exs, 64, seed=0)
        self.assertEqual(len(packed), 1)
        p = packed[0]
        self.assertEqual(len(p.kd), len(p.ids))
        for pos, e in enumerate(p.kd):
            if e is not None:
                self.assertEqual(e[0][0], p.ids[pos])  # each row's first id is the teacher's own token here
        batch = data.collate(exs, pad_id=0)
        width = len(batch["input_ids"][0])
        self.assertEqual([len(r) for r in batch["kd_mask"]], [width] * 3)
        self.assertTrue(all(len(row) == 4 for item in batch["kd_ids"] for row in item))  # widest K of the batch
        self.assertFalse(any(batch["kd_mask"][2]))  # the example without a teacher
        self.assertEqual(sum(batch["kd_mask"][1]), 2)
        self.assertEqual(sum(batch["kd_mask"][0]), 3)
        row = batch["kd_logprobs"][0][batch["kd_mask"][0].index(True)]
        self.assertEqual(row[2:], [-math.inf, -math.inf])  # K=2 padded to 4 with no mass
        cut, stats = data.encode_all([a], data.Encoder(TOK), len(exs[0].ids) - 1, teacher=True)
        self.assertEqual(len(cut[0].kd), len(cut[0].ids))
        self.assertEqual(stats.truncated, 1)

    def test_bad_teacher_fields_name_the_line(self):
        good = teacher_for("4")
        for bad, msg in (({"tokens": []}, "expected an object"),
                         ({**good, "tokens": []}, "non-empty list"),
                         ({**good, "top_ids": good["top_ids"] * 2}, "same length"),
                         ({**good, "top_logprobs": [[0.5] * 3] * 2}, "log-probability"),
                         ({**good, "top_logprobs": [[-1.0]] * 2}, "one log-probability")):
            with self.assertRaisesRegex(ConfigError, "x.jsonl:3: teacher: .*" + msg):
                teacher.check(bad, "x.jsonl:3")


class ConfigKeysTest(unittest.TestCase):
    def test_full_and_kd_alpha(self):
        from test_recipes import valid_config

        from slm_recipes.config import finetune_config

        c = finetune_config(valid_config())
        self.assertEqual((c.full, c.kd_alpha), (False, None))  # optional keys: a config without them still reads
        c = finetune_config(valid_config(full=True, kd_alpha=0.25))
        self.assertEqual((c.full, c.kd_alpha), (True, 0.25))
        for over, msg in (({"kd_alpha": 1.5}, "'kd_alpha' must be a number >= 0 and <= 1"),
                          ({"full": "yes"}, "'full' must be true or false"),
                          ({"full": True, "qlora": True, "device": "cuda"}, "cannot train a 4-bit"),
                          ({"full": True, "merge": True}, "no adapter to merge")):
            with self.assertRaisesRegex(ConfigError, msg):
                finetune_config(valid_config(**over))


def direct_loss(logits, labels, rows, alpha):
    """The formula, written out with Python floats: logits[i] predicts labels[i] (already shifted); rows[i] is
    (top_ids, top_logprobs) or None."""
    total = 0.0
    for lg, y, row in zip(logits, labels, rows):
        lse = math.log(sum(math.exp(v) for v in lg))
        ce = lse - lg[y]
        if row is None:
            total += ce
            continue
        ids, lps = row
        z = sum(math.exp(v) for v in lps)
        p = [math.exp(v) / z for v in lps]
        kl = sum(pj * (math.log(pj) - (lg[k] - lse)) for pj, k in zip(p, ids))
        total += alpha * kl + (1 - alpha) * ce
    return total


@unittest.skipIf(torch is None, "torch is not installed")
class KDLossTest(unittest.TestCase):
    def case(self, seed=0, n=9, vocab=23, k=4):
        g = torch.Generator().manual_seed(seed)
        logits = torch.randn(n, vocab, generator=g, dtype=torch.float64) * 2
        targets = torch.randint(0, vocab, (n,), generator=g)
        rows = []
        for i in range(n):
            if i % 3 == 2:
                rows.append(None)
                continue
            ids = torch.randperm(vocab, generator=g)[:k].tolist()
            lps = sorted((-torch.rand(k, generator=g, dtype=torch.float64) * 6).tolist(), reverse=True)
            rows.append((ids, lps))
        return logits, targets, rows

    def tensors(self, rows, k):
        ids = [r[0] if r else [0] * k for r in rows]
        lps = [r[1] if r else [-math.inf] * k for r in rows]
        return torch.tensor(ids), torch.tensor(lps, dtype=torch.float64), torch.tensor([r is not None for r in rows])

    def loss(self, logits, targets, rows, alpha, k=4):
        from slm_recipes.kd_loss import kd_loss_sum

        return kd_loss_sum(logits, targets, *self.tensors(rows, k), alpha)

    def test_equals_the_formula(self):
        for alpha in (0.0, 0.3, 1.0):
            logits, targets, rows = self.case(seed=int(alpha * 10))
            got = float(self.loss(logits, targets, rows, alpha))
            want = direct_loss(logits.tolist(), targets.tolist(), rows, alpha)
            self.assertAlmostEqual(got, want, places=5)

    def test_teacher_renormalised_over_its_k_tokens(self):
        # log-probs of the full softmax sum to less than 1 over K tokens; only their ratios may matter.
        logits, targets, rows = self.case(seed=3)
        shifted = [(r[0], [v - 2.5 for v in r[1]]) if r else None for r in rows]
        self.assertAlmostEqual(float(self.loss(logits, targets, rows, 1.0)),
                               float(self.loss(logits, targets, shifted, 1.0)), places=6)

    def test_zero_when_the_student_is_the_teacher_and_ce_at_k_1(self):
        logits, targets, rows = self.case(seed=4, k=1)
        kd_rows = [r for r in rows if r]
        # K = 1: the KL against the student's full softmax is the cross-entropy of the teacher's token.
        one = self.loss(logits[: len(kd_rows)], targets[: len(kd_rows)], kd_rows, 1.0, k=1)
        ce = torch.nn.functional.cross_entropy(logits[: len(kd_rows)], torch.tensor([r[0][0] for r in kd_rows]),
                                               reduction="sum")
        self.assertAlmostEqual(float(one) / float(ce), 1.0, places=6)  # the loss is computed in fp32
        # A student whose softmax is the teacher's renormalised top-K (nothing elsewhere): KL 0.
        vocab, ids, lps = 23, [3, 7, 11], [-0.2, -1.9, -3.0]
        student = torch.full((1, vocab), -1e4, dtype=torch.float64)
        student[0, ids] = torch.tensor(lps, dtype=torch.float64)
        self.assertAlmostEqual(float(self.loss(student, torch.tensor([3]), [(ids, lps)], 1.0, k=3)), 0.0, places=6)

    def test_padded_columns_and_rows_without_teacher_carry_no_mass_or_nan(self):
        logits, targets, rows = self.case(seed=5, k=3)
        logits.requires_grad_(True)
        padded = self.loss(logits, targets, rows, 0.5, k=3)
        from slm_recipes.kd_loss import kd_loss_sum

        ids, lps, mask = self.tensors(rows, 3)
        wide = kd_loss_sum(logits, targets, torch.cat([ids, torch.zeros_like(ids[:, :2])], 1),
                           torch.cat([lps, torch.full_like(lps[:, :2], -math.inf)], 1), mask, 0.5)
        self.assertAlmostEqual(float(padded), float(wide), places=9)
        wide.backward()
        self.assertTrue(torch.isfinite(logits.grad).all())

    def test_causal_lm_loss_lines_up_the_teacher_with_the_shift(self):
        """The training loss on a collated batch: logits at position i predict token i+1 and meet the teacher's
        row for token i+1 — computed here from the model's own logits with the formula above."""
        from transformers import LlamaConfig, LlamaForCausalLM

        from slm_recipes.train_step import CausalLMLoss, to_device

        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(vocab_size=400, hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        recs = [chat("12+34", "46", teacher_for("46", k=3)), chat("7-2", "5"), chat("1+1", "2", teacher_for("9"))]
        exs, stats = data.encode_all(recs, data.Encoder(TOK), 64, teacher=True)
        self.assertEqual((stats.kd_examples, stats.kd_misaligned), (1, 1))
        batch = to_device(data.collate(exs, pad_id=0), torch.device("cpu"))
        for chunked in (True, False):
            loss, n = CausalLMLoss(model, torch.float32, chunked=chunked, kd_alpha=0.7)(batch)
            self.assertEqual(n, batch["n_loss"])
            want = 0.0
            for i, ex in enumerate(exs):
                with torch.no_grad():
                    lg = model(input_ids=torch.tensor([ex.ids])).logits[0].double()
                at = [p for p in range(1, len(ex.ids)) if ex.labels[p] != data.IGNORE]
                want += direct_loss([lg[p - 1].tolist() for p in at], [ex.labels[p] for p in at],
                                    [ex.kd[p] if ex.kd else None for p in at], 0.7)
            self.assertAlmostEqual(float(loss), want, places=3)


if __name__ == "__main__":
    unittest.main()
