"""Tests of the recipe pieces that need no torch: events, config validation, data encoding/masking/packing,
and the recipe shell's exit codes. Run with `python3 -m unittest discover -s test/python` (npm test does)."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "recipes"))
sys.path.insert(0, os.path.dirname(__file__))

from fake_tokenizer import FakeTokenizer  # noqa: E402
from slm_recipes import data  # noqa: E402
from slm_recipes.config import finetune_config, merge_config  # noqa: E402
from slm_recipes.errors import ConfigError  # noqa: E402

FIXTURE = os.path.join(ROOT, "test", "fixtures", "tiny-arith")
try:
    import jinja2  # noqa: F401  (transformers renders chat templates with it; so does the stand-in)
    HAS_JINJA = True
except ImportError:
    HAS_JINJA = False
HAS_TORCH = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True).returncode == 0


def valid_config(**over):
    cfg = {"base": os.path.join(FIXTURE, "hf"), "train": os.path.join(FIXTURE, "data", "sub-train.jsonl"),
           "eval": None, "output_dir": "/tmp/slm-test-out", "chat_template": None, "train_on_prompt": False,
           "epochs": 1, "max_steps": None, "lr": 2e-4, "rank": 16, "alpha": 32, "dropout": 0.0,
           "target_modules": "all-linear", "batch_size": 8, "grad_accum": 1, "max_seq_len": 256, "packing": False,
           "qlora": False, "seed": 0, "resume": False, "merge": False, "device": "auto", "gpus": 1}
    cfg.update(over)
    return cfg


def run_script(code, *args):
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "recipes")))


class EventsTest(unittest.TestCase):
    def test_events_are_json_lines_and_stray_prints_go_to_stderr(self):
        r = run_script("import sys\nfrom slm_recipes import events as ev\nev.claim_stdout()\n"
                       "print('stray library output')\n"
                       "ev.step('train', 'start', 'Train')\nev.progress('train', 'steps', 3, 10, 1.5)\n"
                       "ev.metric('loss', 0.5, step=3)\nev.metric('loss', float('nan'), step=4)\n"
                       "ev.log('warn', 'careful')\nev.result({'x': float('inf'), 'y': [1, float('nan')]})\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("stray library output", r.stderr)
        lines = [json.loads(x) for x in r.stdout.splitlines()]
        self.assertEqual([e["type"] for e in lines], ["step", "progress", "metric", "log", "result"])
        for e in lines:
            self.assertIsInstance(e["ts"], int)
        self.assertEqual(lines[0], {**lines[0], "id": "train", "status": "start", "title": "Train"})
        self.assertEqual(lines[1]["current"], 3)
        self.assertEqual(lines[1]["total"], 10)
        self.assertEqual(lines[2]["value"], 0.5)
        self.assertEqual(lines[2]["step"], 3)
        self.assertEqual(lines[4]["data"], {"x": None, "y": [1, None]})


class ConfigTest(unittest.TestCase):
    def test_valid_config(self):
        c = finetune_config(valid_config(max_steps=5, target_modules=["q_proj", "v_proj"]))
        self.assertEqual(c.max_steps, 5)
        self.assertEqual(c.target_modules, ["q_proj", "v_proj"])
        self.assertEqual(c.checkpointing, "auto")
        self.assertFalse(c.compile)

    def assertConfigError(self, pattern, **over):
        with self.assertRaises(ConfigError) as cm:
            finetune_config(valid_config(**over))
        self.assertRegex(str(cm.exception), pattern)

    def test_errors_name_the_key(self):
        self.assertConfigError("'rank' must be an integer >= 1", rank=0)
        self.assertConfigError("'rank' must be an integer", rank=2.5)
        self.assertConfigError("'packing' must be true or false", packing=1)
        self.assertConfigError("'dropout' must be a number >= 0 and < 1", dropout=1)
        self.assertConfigError("'lr' must be a number > 0", lr=0)
        self.assertConfigError("'device' must be one of", device="tpu")
        self.assertConfigError("'target_modules' must be", target_modules=[])
        self.assertConfigError("unknown key.*'learning_rate'", learning_rate=1)
        self.assertConfigError("train: .* does not exist", train="/nonexistent.jsonl")
        self.assertConfigError("base: .* has no config.json", base=FIXTURE)
        self.assertConfigError("'gpus' must be", gpus=0)
        self.assertConfigError("qlora: .*CUDA", qlora=True, device="cpu")

    def test_missing_key(self):
        raw = valid_config()
        del raw["seed"]
        with self.assertRaisesRegex(ConfigError, "missing key 'seed'"):
            finetune_config(raw)

    def test_merge_config(self):
        c = merge_config({"base": os.path.join(FIXTURE, "hf"), "adapter": os.path.join(FIXTURE, "lora-sub"),
                          "out": "/tmp/x"})
        self.assertTrue(c.adapter.endswith("lora-sub"))
        with self.assertRaisesRegex(ConfigError, "adapter: .* has no adapter_config.json"):
            merge_config({"base": os.path.join(FIXTURE, "hf"), "adapter": FIXTURE, "out": "/tmp/x"})


class DataTest(unittest.TestCase):
    def setUp(self):
        self.tok = FakeTokenizer()
        self.enc = data.Encoder(self.tok)

    def trained_text(self, ids, labels):
        return self.tok.decode([t for t, l in zip(ids, labels) if l != data.IGNORE])

    @unittest.skipUnless(HAS_JINJA, "jinja2 is not installed")
    def test_messages_loss_on_assistant_only(self):
        rec = {"messages": [{"role": "user", "content": "12+34"}, {"role": "assistant", "content": "46"}]}
        ids, labels = self.enc.encode(rec, data.DataStats())
        self.assertEqual(self.tok.decode(ids), "<s><|user|>12+34<|assistant|>46</s>")
        self.assertEqual(self.trained_text(ids, labels), "46</s>")

    @unittest.skipUnless(HAS_JINJA, "jinja2 is not installed")
    def test_multi_turn_and_system(self):
        tmpl = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% if m['role'] == 'assistant' %}"
                "</s>{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")
        enc = data.Encoder(self.tok, chat_template=tmpl)
        rec = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "a"},
                            {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"},
                            {"role": "assistant", "content": "d"}]}
        stats = data.DataStats()
        ids, labels = enc.encode(rec, stats)
        self.assertEqual(self.trained_text(ids, labels), "b</s>d</s>")
        self.assertEqual(stats.inexact_masks, 0)

    @unittest.skipUnless(HAS_JINJA, "jinja2 is not installed")
    def test_train_on_prompt(self):
        enc = data.Encoder(self.tok, train_on_prompt=True)
        rec = {"messages": [{"role": "user", "content": "1+1"}, {"role": "assistant", "content": "2"}]}
        ids, labels = enc.encode(rec, data.DataStats())
        # Everything but the first token (which nothing predicts).
        self.assertEqual(labels[0], data.IGNORE)
        self.assertEqual(labels[1:], ids[1:])

    def test_prompt_completion_and_text(self):
        ids, labels = self.enc.encode({"prompt": "Q:", "completion": "A"}, data.DataStats())
        self.assertEqual(self.tok.decode(ids), "<s>Q:A</s>")
        self.assertEqual(self.trained_text(ids, labels), "A</s>")
        ids, labels = self.enc.encode({"text": "hi"}, data.DataStats())
        self.assertEqual(self.tok.decode(ids), "<s>hi</s>")
        self.assertEqual(self.trained_text(ids, labels), "hi</s>")

    def test_no_template_is_a_clear_error(self):
        enc = data.Encoder(FakeTokenizer(chat_template=None))
        with self.assertRaisesRegex(ConfigError, "no chat template"):
            enc.encode({"messages": [{"role": "user", "content": "x"}]}, data.DataStats())

    @unittest.skipUnless(HAS_JINJA, "jinja2 is not installed")
    def test_truncation_and_dropping(self):
        recs = [{"messages": [{"role": "user", "content": "1234567890"}, {"role": "assistant", "content": "x"}]},
                {"prompt": "ab", "completion": "cdefgh"},
                {"text": "short"}]
        examples, stats = data.encode_all(recs, self.enc, 7)
        # The first loses its answer entirely (dropped); the second is cut inside the completion.
        self.assertEqual(stats.dropped, 1)
        self.assertEqual(stats.truncated, 2)
        self.assertEqual(stats.examples, 2)
        self.assertTrue(all(len(e.ids) <= 7 for e in examples))
        self.assertEqual(self.trained_text(examples[0].ids, examples[0].labels), "cdef")
        self.assertEqual(self.trained_text(examples[1].ids, examples[1].labels), "short</s>")

    @unittest.skipUnless(HAS_JINJA, "jinja2 is not installed")
    def test_fixture_data_masks(self):
        recs = data.read_jsonl(os.path.join(FIXTURE, "data", "sub-eval.jsonl"))
        examples, stats = data.encode_all(recs, self.enc, 256)
        self.assertEqual(stats.examples, 500)
        for rec, ex in zip(recs[:50], examples):
            self.assertEqual(self.trained_text(ex.ids, ex.labels), rec["messages"][1]["content"] + "</s>")

    def test_packing_positions_and_boundaries(self):
        exs = [data.Example([1, 10, 11], [data.IGNORE, 10, 11]), data.Example([1, 20], [data.IGNORE, 20]),
               data.Example([1, 30, 31, 32], [data.IGNORE, 30, 31, 32])]
        packs = data.pack(exs, 6, seed=0)
        self.assertEqual(sorted(t for p in packs for t in p.ids), sorted(t for e in exs for t in e.ids))
        for p in packs:
            self.assertLessEqual(len(p.ids), 6)
            # Each document restarts at position 0, and its first token carries no loss.
            starts = [i for i, pos in enumerate(p.positions) if pos == 0]
            for s in starts:
                self.assertEqual(p.ids[s], 1)
                self.assertEqual(p.labels[s], data.IGNORE)
        b = data.collate(packs, pad_id=0)
        self.assertNotIn("attention_mask", b)
        width = len(b["input_ids"][0])
        for row_ids, row_pos, row_lab in zip(b["input_ids"], b["position_ids"], b["labels"]):
            self.assertEqual(len(row_ids), width)
            self.assertEqual(len(row_pos), width)
            self.assertEqual(len(row_lab), width)

    def test_collate_pads_right_with_mask(self):
        b = data.collate([data.Example([1, 2, 3], [-100, 2, 3]), data.Example([1, 5], [-100, 5])], pad_id=0)
        self.assertEqual(b["input_ids"], [[1, 2, 3], [1, 5, 0]])
        self.assertEqual(b["attention_mask"], [[1, 1, 1], [1, 1, 0]])
        self.assertEqual(b["labels"], [[-100, 2, 3], [-100, 5, -100]])

    def test_epoch_order_is_a_function_of_seed_and_epoch(self):
        a = data.epoch_batches(10, 3, seed=1, epoch=0)
        self.assertEqual(a, data.epoch_batches(10, 3, seed=1, epoch=0))
        self.assertNotEqual(a, data.epoch_batches(10, 3, seed=1, epoch=1))
        self.assertEqual(sorted(i for b in a for i in b), list(range(10)))
        self.assertEqual([len(b) for b in a], [3, 3, 3, 1])

    def test_read_jsonl_errors_name_the_line(self):
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
            f.write('{"text": "ok"}\n{bad\n')
        with self.assertRaisesRegex(ConfigError, r":2: not JSON"):
            data.read_jsonl(f.name)
        os.unlink(f.name)


class RecipeShellTest(unittest.TestCase):
    def run_recipe(self, name, cfg):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(cfg, f)
        try:
            return subprocess.run([sys.executable, os.path.join(ROOT, "recipes", name), "--config", f.name],
                                  capture_output=True, text=True, timeout=120)
        finally:
            os.unlink(f.name)

    def test_bad_config_exits_2_with_one_line(self):
        r = self.run_recipe("finetune_lora.py", valid_config(rank="big"))
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stderr.strip(), "finetune config: 'rank' must be an integer >= 1, got 'big'")
        self.assertEqual(r.stdout, "")

    @unittest.skipIf(HAS_TORCH, "torch is installed here")
    def test_missing_stack_exits_5_with_a_warning_event(self):
        r = self.run_recipe("finetune_lora.py", valid_config())
        self.assertEqual(r.returncode, 5, r.stderr)
        self.assertRegex(r.stderr.strip(), r"^missing python module: torch, transformers, peft")
        events = [json.loads(x) for x in r.stdout.splitlines()]
        self.assertEqual(events[0]["type"], "log")
        self.assertEqual(events[0]["level"], "warn")
        self.assertIn("slm setup python", events[0]["message"])
        r = self.run_recipe("finetune_lora.py", valid_config(qlora=True))
        self.assertEqual(r.returncode, 5, r.stderr)
        self.assertRegex(r.stderr.strip(), r"^missing python module: .*bitsandbytes$")
        self.assertIn("slm setup python --qlora", json.loads(r.stdout.splitlines()[0])["message"])
        r = self.run_recipe("merge_lora.py", {"base": os.path.join(FIXTURE, "hf"),
                                              "adapter": os.path.join(FIXTURE, "lora-sub"), "out": "/tmp/m"})
        self.assertEqual(r.returncode, 5, r.stderr)


if __name__ == "__main__":
    unittest.main()
