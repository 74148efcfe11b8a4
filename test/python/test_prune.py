"""Tests of recipes/slm_recipes/prune: config validation (no torch), and, with torch, that the FFN cut computes
exactly what the unpruned FFN computes without the removed channels, and which blocks go."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "recipes"))

from slm_recipes.errors import ConfigError  # noqa: E402
from slm_recipes.prune.config import prune_config  # noqa: E402

FIXTURE = os.path.join(ROOT, "test", "fixtures", "tiny-arith")
HAS_TORCH = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True).returncode == 0


def config(**over):
    cfg = {"model": os.path.join(FIXTURE, "hf"), "output_dir": os.path.join(tempfile.gettempdir(), "slm-prune-none"),
           "layers": 1, "calibration": {"file": os.path.join(FIXTURE, "data", "eval-text.txt"), "format": "text"}}
    cfg.update(over)
    return cfg


class PruneConfigTest(unittest.TestCase):
    def test_defaults(self):
        c = prune_config(config())
        self.assertEqual((c.layers, c.ffn_size, c.samples, c.seq_len, c.heal, c.device), (1, None, 32, 256, None, "auto"))

    def test_one_cut_per_run(self):
        with self.assertRaisesRegex(ConfigError, "exactly one of 'layers'"):
            prune_config(config(ffn_size=576))
        with self.assertRaisesRegex(ConfigError, "exactly one of 'layers'"):
            prune_config(config(layers=None))

    def test_ffn_size_is_a_multiple_of_32(self):
        with self.assertRaisesRegex(ConfigError, "multiple of 32"):
            prune_config(config(layers=None, ffn_size=100))
        self.assertEqual(prune_config(config(layers=None, ffn_size=576)).ffn_size, 576)

    def test_heal(self):
        data = {"file": os.path.join(FIXTURE, "data", "add-train.jsonl"), "format": "chat-jsonl"}
        h = prune_config(config(heal={"mode": "data", "data": data, "steps": 5})).heal
        self.assertEqual((h.mode, h.steps, h.lr, h.batch_size), ("data", 5, 1e-4, 8))
        with self.assertRaisesRegex(ConfigError, "'data' is required"):
            prune_config(config(heal={"mode": "data"}))
        with self.assertRaisesRegex(ConfigError, "distillation uses the calibration"):
            prune_config(config(heal={"mode": "distill", "data": data}))

    def test_refuses_a_full_output_folder_and_unknown_keys(self):
        with tempfile.TemporaryDirectory() as d:
            open(os.path.join(d, "x"), "w").close()
            with self.assertRaisesRegex(ConfigError, "not an empty folder"):
                prune_config(config(output_dir=d))
        with self.assertRaisesRegex(ConfigError, "unknown key"):
            prune_config(config(ratio=0.5))


@unittest.skipUnless(HAS_TORCH, "needs torch")
class PruneSurgeryTest(unittest.TestCase):
    def test_ffn_cut_equals_the_ffn_without_the_removed_channels(self):
        import torch

        from slm_recipes.prune.surgery import slice_ffn

        torch.manual_seed(0)

        class Mlp(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.gate_proj, self.up_proj = torch.nn.Linear(16, 64, bias=False), torch.nn.Linear(16, 64, bias=False)
                self.down_proj = torch.nn.Linear(64, 16, bias=False)

            def forward(self, x):
                return self.down_proj(torch.nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))

        class Block(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.mlp = Mlp()

        blocks = [Block(), Block()]
        x = torch.randn(5, 16)
        importance = [torch.rand(64), torch.rand(64)]
        zeroed = []
        for b, score in zip(blocks, importance):
            w = b.mlp.down_proj.weight.detach().clone()
            w[:, torch.argsort(score)[:32]] = 0  # the 32 least important channels contribute nothing
            zeroed.append(torch.nn.functional.linear(
                torch.nn.functional.silu(b.mlp.gate_proj(x)) * b.mlp.up_proj(x), w))
        removed = slice_ffn(blocks, importance, 32)
        for b, score, want, gone in zip(blocks, importance, zeroed, removed):
            self.assertEqual(b.mlp.gate_proj.weight.shape, (32, 16))
            self.assertEqual(b.mlp.down_proj.weight.shape, (16, 32))
            self.assertEqual(sorted(gone), sorted(torch.argsort(score)[:32].tolist()))
            torch.testing.assert_close(b.mlp(x), want, rtol=1e-5, atol=1e-6)

    def test_lowest_scores_go_and_per_layer_config_lists_follow(self):
        from slm_recipes.prune.scores import lowest
        from slm_recipes.prune.surgery import pruned_config

        self.assertEqual(lowest([0.9, 0.1, 0.5, 0.05], 2), [1, 3])
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump({"num_hidden_layers": 4, "architectures": ["X"], "intermediate_size": 64,
                           "layer_types": ["full", "sliding", "full", "sliding"]}, f)
            c = pruned_config(d, drop=[1, 3])
            self.assertEqual((c["num_hidden_layers"], c["layer_types"], c["architectures"]), (2, ["full", "full"], ["X"]))
            self.assertEqual(pruned_config(d, intermediate=32)["intermediate_size"], 32)


if __name__ == "__main__":
    unittest.main()


@unittest.skipUnless(HAS_TORCH, "needs torch")
class PruneHealDataTest(unittest.TestCase):
    def test_heal_batches_from_text_and_from_chats(self):
        # Both shapes go through the fine-tune's own collate, which reads every field of its Example (kd too).
        from transformers import AutoTokenizer

        from slm_recipes.prune.heal import _data_batches

        tok = AutoTokenizer.from_pretrained(os.path.join(FIXTURE, "hf"))
        for name, fmt in (("eval-text.txt", "text"), ("add-train.jsonl", "chat-jsonl")):
            data = {"file": os.path.join(FIXTURE, "data", name), "format": fmt}
            cfg = prune_config(config(seq_len=32, heal={"mode": "data", "data": data, "steps": 2, "batch_size": 4}))
            batch_of, rows = _data_batches(cfg.heal, cfg, tok, 256)
            b = batch_of(0)
            self.assertGreater(rows, 0)
            self.assertEqual(b["input_ids"].shape[0], 4)
            if fmt == "text":
                # Plain text: every token is learned.
                self.assertTrue(bool((b["labels"] == b["input_ids"]).all()))


@unittest.skipUnless(HAS_TORCH, "needs torch")
class PruneCutDetailTest(unittest.TestCase):
    def test_names_the_blocks_and_their_influence(self):
        # It was "3 (0.0032)" inside the step's parentheses: "Dropping 1 block (3 (0.0032))".
        from slm_recipes.prune.pipeline import cut_detail

        self.assertEqual(cut_detail([3], [0.9, 0.5, 0.05, 0.0032]), "block 3, block influence 0.0032")
        self.assertEqual(cut_detail([2, 3], [0.9, 0.5, 0.05, 0.0032]), "blocks 2, 3, block influence 0.0500, 0.0032")
