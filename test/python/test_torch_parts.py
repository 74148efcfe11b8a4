"""Tests of the recipe's torch pieces that need no transformers: the chunked cross-entropy against PyTorch's
own, the training step's gradient accumulation and schedule, and checkpoint save/load of optimizer state.
Skipped where torch is not installed (npm test on a machine without the ML stack); test/gpu runs them."""
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "recipes"))

try:
    import torch
except ImportError:
    torch = None


@unittest.skipIf(torch is None, "torch is not installed")
class ChunkedCrossEntropyTest(unittest.TestCase):
    def setUp(self):
        from slm_recipes.chunked_ce import IGNORE, linear_cross_entropy_sum

        self.IGNORE, self.lce = IGNORE, linear_cross_entropy_sum
        g = torch.Generator().manual_seed(0)
        self.hidden = torch.randn(3, 17, 32, generator=g, dtype=torch.float64, requires_grad=True)
        self.weight = torch.randn(101, 32, generator=g, dtype=torch.float64)
        self.labels = torch.randint(0, 101, (3, 17), generator=g)
        self.labels[0, :5] = IGNORE
        self.labels[2, 9:] = IGNORE

    def reference(self):
        logits = self.hidden @ self.weight.t()
        return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), self.labels[:, 1:].flatten(),
                                                 ignore_index=self.IGNORE, reduction="sum")

    def test_value_and_gradient_match_pytorch(self):
        for rows in (1, 7, 1000):  # chunk boundaries anywhere, and one chunk for everything
            h = self.hidden.detach().clone().requires_grad_(True)
            loss, n = self.lce(h, self.weight, self.labels, chunk_rows=rows)
            (loss * 0.5).backward()
            ref_h = self.hidden.detach().clone().requires_grad_(True)
            self.hidden = ref_h
            ref = self.reference()
            (ref * 0.5).backward()
            self.assertEqual(n, int((self.labels[:, 1:] != self.IGNORE).sum()))
            self.assertTrue(torch.allclose(loss.double(), ref, rtol=1e-6), (float(loss), float(ref)))
            self.assertTrue(torch.allclose(h.grad, ref_h.grad, atol=1e-5), float((h.grad - ref_h.grad).abs().max()))

    def test_no_grad_path_gives_the_same_loss(self):
        with torch.no_grad():
            loss, _ = self.lce(self.hidden, self.weight, self.labels, chunk_rows=5)
            ref = self.reference()
        self.assertTrue(torch.allclose(loss.double(), ref, rtol=1e-6))


@unittest.skipIf(torch is None, "torch is not installed")
class TrainStepTest(unittest.TestCase):
    def make(self):
        from slm_recipes.train_step import make_optimizer, make_scheduler

        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Embedding(50, 16), torch.nn.Linear(16, 50))
        params = list(model.parameters())
        opt = make_optimizer(params, 1e-2, "cpu")
        return model, params, opt, make_scheduler(opt, 10, 2)

    def loss_fn(self, model):
        def fn(batch):
            logits = model(batch["input_ids"])
            t = batch["labels"][:, 1:]
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), t.flatten(), ignore_index=-100,
                                                     reduction="sum")
            return loss, int((t != -100).sum())
        return fn

    def batches(self):
        g = torch.Generator().manual_seed(3)
        ids = torch.randint(0, 50, (4, 9), generator=g)
        labels = ids.clone()
        labels[1, :6] = -100
        return ids, labels

    def test_accumulation_equals_one_big_batch(self):
        from slm_recipes.train_step import train_step

        ids, labels = self.batches()
        results = []
        for split in (1, 2):
            model, params, opt, sched = self.make()
            micro = []
            for i in range(0, 4, 4 // split):
                lab = labels[i : i + 4 // split]
                micro.append({"input_ids": ids[i : i + 4 // split], "labels": lab,
                              "n_loss": int((lab[:, 1:] != -100).sum())})
            loss, _ = train_step(self.loss_fn(model), micro, params, opt, sched, lambda: torch.autocast("cpu", enabled=False))
            results.append((float(loss), [p.detach().clone() for p in params]))
        (l1, p1), (l2, p2) = results
        self.assertAlmostEqual(l1, l2, places=5)
        for a, b in zip(p1, p2):
            self.assertTrue(torch.allclose(a, b, atol=1e-6))

    def test_schedule_warms_up_then_decays_to_zero(self):
        _, _, opt, sched = self.make()
        lrs = []
        for _ in range(10):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        self.assertAlmostEqual(lrs[0], 0.5e-2)
        self.assertAlmostEqual(lrs[1], 1e-2)
        self.assertTrue(all(a > b for a, b in zip(lrs[1:], lrs[2:])))
        self.assertAlmostEqual(opt.param_groups[0]["lr"], 0.0)


@unittest.skipIf(torch is None, "torch is not installed")
class CheckpointTest(unittest.TestCase):
    """Save after 3 steps, resume into fresh objects, 3 more steps: the same weights as 6 steps in one go
    (dropout included, so the RNG state must come back too)."""

    class Model(torch.nn.Module if torch else object):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.emb = torch.nn.Embedding(40, 12)
            self.emb.weight.requires_grad_(False)  # frozen, like a LoRA base
            self.drop = torch.nn.Dropout(0.3)
            self.out = torch.nn.Linear(12, 40)

        def forward(self, ids):
            return self.out(self.drop(self.emb(ids)))

        def save_pretrained(self, path):  # what checkpoint.save asks of a PEFT model
            os.makedirs(path, exist_ok=True)
            torch.save(self.out.state_dict(), os.path.join(path, "adapter.pt"))

    def setup(self):
        from slm_recipes.train_step import make_optimizer, make_scheduler

        model = self.Model()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = make_optimizer(params, 5e-2, "cpu")
        return model, params, opt, make_scheduler(opt, 6, 1)

    def steps(self, model, params, opt, sched, n):
        from slm_recipes.train_step import train_step

        g = torch.Generator().manual_seed(7)
        ids = torch.randint(0, 40, (4, 6), generator=g)

        def loss_fn(batch):
            logits = model(batch["input_ids"])
            return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten(),
                                                     reduction="sum"), 0

        for _ in range(n):
            train_step(loss_fn, [{"input_ids": ids, "labels": ids, "n_loss": 20}], params, opt, sched,
                       lambda: torch.autocast("cpu", enabled=False))

    def test_resume_is_exact(self):
        import tempfile

        from slm_recipes import checkpoint

        with tempfile.TemporaryDirectory() as out:
            ref = self.setup()
            torch.manual_seed(1)
            self.steps(*ref, 6)

            run = self.setup()
            torch.manual_seed(1)
            self.steps(*run, 3)
            fp = {"lr": 5e-2}
            checkpoint.save(out, run[0], run[2], run[3], 3, {"tokens": 72, "seconds": 1.0}, fp)
            self.steps(*run, 1)  # what happens after the checkpoint must not matter
            path, step = checkpoint.latest(out)
            self.assertEqual(step, 3)
            self.assertTrue(os.path.isfile(os.path.join(path, "adapter", "adapter.pt")))

            fresh = self.setup()
            torch.manual_seed(12345)  # a different RNG state that the checkpoint must replace
            step, counters = checkpoint.load(path, fresh[0], fresh[2], fresh[3], fp)
            self.assertEqual((step, counters["tokens"]), (3, 72))
            self.steps(*fresh, 3)
            for a, b in zip(ref[1], fresh[1]):
                self.assertTrue(torch.equal(a, b), float((a - b).abs().max()))
            with self.assertRaisesRegex(Exception, "different settings \\(lr\\)"):
                checkpoint.load(path, fresh[0], fresh[2], fresh[3], {"lr": 1e-3})


if __name__ == "__main__":
    unittest.main()
