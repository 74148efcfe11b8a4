"""recipes/export_onnx.py (slm export --format onnx).

The config checks need no ML stack and run in test/python's discovery run. The exports need torch, transformers,
onnx and onnxruntime (onnx_ir for q4); they run in their own vitest file, test/unit/onnxExportPython.test.ts, which
sets SLM_ONNX_EXPORT_TESTS=1 (the discovery run skips them):
- the layout, read with the onnx package: input/output names, element types, axis names, static KV heads and head
  size, opset, MatMulNBits blocks for q4; config.json, generation_config.json, tokenizer.json, chat template;
- the independent check: onnxruntime's own InferenceSession in a plain greedy loop with the KV cache, on the
  exported file, answers what transformers' generate answers (12+34 -> 46, the first 20 of add-eval), fp32 and q4;
- a second export adds its dtypes to the folder (with external data) and leaves the first files as they were;
- an encoder-decoder config: exit 2 with the reason.
SIGINT is test/e2e/export.test.ts's (through slm, with the registry)."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "recipes"))

from slm_recipes.errors import ConfigError  # noqa: E402
from slm_recipes.onnx_export.config import export_config  # noqa: E402

FIXTURE = os.path.join(ROOT, "test", "fixtures", "tiny-arith")
MODEL = os.path.join(FIXTURE, "hf")
RECIPE = os.path.join(ROOT, "recipes", "export_onnx.py")
try:
    import numpy as np
    import onnx
    import onnxruntime
    import torch
    import transformers  # noqa: F401
except ImportError:
    torch = None


def export_tests(cls):
    cls = unittest.skipIf(torch is None, "torch, transformers, onnx and onnxruntime are not installed")(cls)
    return unittest.skipUnless(os.environ.get("SLM_ONNX_EXPORT_TESTS") == "1",
                               "exports tiny-arith several times: run by test/unit/onnxExportPython.test.ts "
                               "(or set SLM_ONNX_EXPORT_TESTS=1)")(cls)


def run_export(cfg):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(cfg, f)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    p = subprocess.Popen([sys.executable, RECIPE, "--config", f.name], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    out, err = p.communicate(timeout=600)
    os.unlink(f.name)
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    return p.returncode, events, err


def result_of(events):
    last = events[-1]
    assert last["type"] == "result", last
    return last["data"]


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class ConfigTest(unittest.TestCase):
    def cfg(self, **over):
        c = {"model": MODEL, "output_dir": os.path.join(tempfile.gettempdir(), "slm-onnx-cfg-test"), "dtypes": ["q4"]}
        c.update(over)
        return c

    def test_defaults_and_order(self):
        c = export_config(self.cfg(dtypes=["q4", "fp32"]))
        self.assertEqual(c.dtypes, ["fp32", "q4"])  # fp32 first: the others are made from it
        self.assertEqual((c.opset, c.external_data, c.block_size, c.verify), (17, "auto", 32, True))

    def test_refusals_name_the_key(self):
        for over, key in [({"dtypes": []}, "dtypes"), ({"dtypes": ["q4f16"]}, "dtypes"), ({"opset": 21}, "opset"),
                          ({"opset": 13}, "opset"), ({"external_data": "yes"}, "external_data"),
                          ({"block_size": 48}, "block_size"), ({"surprise": 1}, "surprise"),
                          ({"model": FIXTURE}, "model")]:
            with self.assertRaises(ConfigError) as e:
                export_config(self.cfg(**over))
            self.assertIn(key, str(e.exception))

    def test_output_dir_must_be_new_empty_or_an_export(self):
        d = tempfile.mkdtemp()
        try:
            export_config(self.cfg(output_dir=d))  # empty: fine
            open(os.path.join(d, "notes.txt"), "w").close()
            with self.assertRaises(ConfigError) as e:
                export_config(self.cfg(output_dir=d))
            self.assertIn("no onnx/ folder", str(e.exception))
            os.mkdir(os.path.join(d, "onnx"))
            export_config(self.cfg(output_dir=d))  # an earlier export: dtypes are added to it
        finally:
            shutil.rmtree(d)


def session(path):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def ort_greedy(sess, ids, eos, max_new=8):
    """The plain loop any onnxruntime user writes: prefill, then one token a step, feeding present back as past."""
    names = [o.name for o in sess.get_outputs()]
    past = {}
    for i in sess.get_inputs():
        if i.name.startswith("past_key_values."):
            past[i.name] = np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32)
    seen, feed_ids, out = len(ids), list(ids), []
    for _ in range(max_new):
        feed = {"input_ids": np.array([feed_ids], np.int64), "attention_mask": np.ones((1, seen), np.int64),
                "position_ids": np.arange(seen - len(feed_ids), seen, dtype=np.int64)[None], **past}
        r = dict(zip(names, sess.run(None, feed)))
        nxt = int(r["logits"][0, -1].argmax())
        if nxt == eos:
            break
        out.append(nxt)
        past = {k: r[k.replace("past_key_values", "present")] for k in past}
        feed_ids, seen = [nxt], seen + 1
    return out


@export_tests
class ExportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        cls.tmp = tempfile.mkdtemp(prefix="slm-onnx-export-")
        cls.out = os.path.join(cls.tmp, "tiny-arith-onnx")
        code, cls.events, err = run_export({"model": MODEL, "output_dir": cls.out, "dtypes": ["fp32", "q4"],
                                            "threads": 1})
        assert code == 0, err
        cls.result = result_of(cls.events)
        cls.tokenizer = AutoTokenizer.from_pretrained(MODEL)
        cls.model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32).eval()
        cls.answers = {}
        with open(os.path.join(FIXTURE, "data", "add-eval.jsonl"), encoding="utf-8") as f:
            cls.problems = [json.loads(line)["messages"][0]["content"] for line in f][:20]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def prompt(self, question):
        ids = self.tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                                 tokenize=True, return_dict=True)["input_ids"]
        return list(ids)

    def torch_answer(self, ids):
        key = tuple(ids)
        if key not in self.answers:
            with torch.no_grad():
                out = self.model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False)
            self.answers[key] = self.tokenizer.decode(out[0][len(ids):], skip_special_tokens=True)
        return self.answers[key]

    def test_files_and_result(self):
        names = sorted(os.listdir(self.out))
        self.assertEqual(names, ["chat_template.jinja", "config.json", "generation_config.json", "onnx",
                                 "tokenizer.json", "tokenizer_config.json"])
        self.assertEqual(sorted(os.listdir(os.path.join(self.out, "onnx"))), ["model.onnx", "model_q4.onnx"])
        r = self.result
        self.assertEqual((r["dtypes"], r["present"], r["opset"]), (["fp32", "q4"], ["fp32", "q4"], 17))
        self.assertEqual((r["layers"], r["kv_heads"], r["head_dim"], r["parameters"]), (4, 4, 32, 3311872))
        self.assertLess(r["logit_diff"]["fp32"], 1e-4)
        self.assertEqual([f["file"] for f in r["files"]], ["onnx/model.onnx", "onnx/model_q4.onnx"])
        # Nothing of the work (.tmp-<pid>-… staging and scratch folders) left beside the folder.
        self.assertEqual([n for n in os.listdir(self.tmp) if n.startswith(".")], [])
        steps = [(e["id"], e["status"]) for e in self.events if e["type"] == "step"]
        self.assertIn(("export:q4", "done"), steps)

    def test_graph_layout_as_transformers_js_reads_it(self):
        for file in ("model.onnx", "model_q4.onnx"):
            m = onnx.load(os.path.join(self.out, "onnx", file), load_external_data=False)
            opsets = {o.domain: o.version for o in m.opset_import}
            self.assertEqual(opsets[""], 17)

            def dims(v):
                return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

            inputs = {v.name: (v.type.tensor_type.elem_type, dims(v)) for v in m.graph.input}
            outputs = {v.name: (v.type.tensor_type.elem_type, dims(v)) for v in m.graph.output}
            i64, f32 = onnx.TensorProto.INT64, onnx.TensorProto.FLOAT
            expected_in = {"input_ids": (i64, ["batch_size", "sequence_length"]),
                           "attention_mask": (i64, ["batch_size", "total_sequence_length"]),
                           "position_ids": (i64, ["batch_size", "sequence_length"])}
            expected_out = {"logits": (f32, ["batch_size", "sequence_length", 320])}
            for layer in range(4):
                for kv in ("key", "value"):
                    expected_in[f"past_key_values.{layer}.{kv}"] = (f32, ["batch_size", 4, "past_sequence_length", 32])
                    expected_out[f"present.{layer}.{kv}"] = (f32, ["batch_size", 4, "total_sequence_length", 32])
            self.assertEqual(inputs, expected_in, file)
            self.assertEqual(outputs, expected_out, file)
            self.assertEqual([v.name for v in m.graph.input][:3], ["input_ids", "attention_mask", "position_ids"])
        q4 = onnx.load(os.path.join(self.out, "onnx", "model_q4.onnx"))
        nbits = [n for n in q4.graph.node if n.op_type == "MatMulNBits"]
        # 7 projections in each of 4 layers, and the output head.
        self.assertEqual(len(nbits), 29)
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nbits[0].attribute}
        self.assertEqual((attrs["bits"], attrs["block_size"]), (4, 32))

    def test_tokenizer_template_and_configs(self):
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(os.path.join(self.out, "tokenizer.json"))
        text = self.tokenizer.apply_chat_template([{"role": "user", "content": "12+34"}], add_generation_prompt=True,
                                                  tokenize=False)
        # tokenizers alone (what tokenizers.js mirrors) gives the ids transformers gives from tokenizer.model.
        self.assertEqual(tok.encode(text, add_special_tokens=False).ids, self.prompt("12+34"))
        with open(os.path.join(MODEL, "tokenizer_config.json"), encoding="utf-8") as f:
            template = json.load(f)["chat_template"]
        with open(os.path.join(self.out, "tokenizer_config.json"), encoding="utf-8") as f:
            tcfg = json.load(f)
        self.assertEqual(tcfg["chat_template"], template)
        self.assertNotIn("is_local", tcfg)
        with open(os.path.join(self.out, "chat_template.jinja"), encoding="utf-8") as f:
            self.assertEqual(f.read(), template)
        with open(os.path.join(self.out, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        self.assertEqual((cfg["model_type"], cfg["num_key_value_heads"], cfg["vocab_size"]), ("llama", 4, 320))
        self.assertNotIn("transformers.js_config", cfg)  # no external data, float32 KV cache: nothing to say
        with open(os.path.join(self.out, "generation_config.json"), encoding="utf-8") as f:
            self.assertEqual(json.load(f)["eos_token_id"], 2)

    def test_onnxruntime_greedy_answers_as_transformers(self):
        for file in ("model.onnx", "model_q4.onnx"):
            sess = session(os.path.join(self.out, "onnx", file))
            answer = self.tokenizer.decode(ort_greedy(sess, self.prompt("12+34"), eos=2))
            self.assertEqual(answer, "46", file)
            differ = []
            for q in self.problems:
                ids = self.prompt(q)
                got = self.tokenizer.decode(ort_greedy(sess, ids, eos=2))
                if got != self.torch_answer(ids):
                    differ.append(q)
            self.assertEqual(differ, [], file)

    def test_adding_dtypes_with_external_data_keeps_the_first_files(self):
        out = os.path.join(self.tmp, "added")
        shutil.copytree(self.out, out)
        before = {f: sha256(os.path.join(out, "onnx", f)) for f in ("model.onnx", "model_q4.onnx")}
        # External data (automatic past 1.8 GB of weights) forced on for this small model.
        code, events, err = run_export({"model": MODEL, "output_dir": out, "dtypes": ["q8", "fp16"], "threads": 1,
                                        "external_data": True})
        self.assertEqual(code, 0, err)
        r = result_of(events)
        self.assertEqual((r["dtypes"], r["present"]), (["fp16", "q8"], ["fp32", "fp16", "q8", "q4"]))
        self.assertEqual([f["external_data"] for f in r["files"]],
                         ["onnx/model_fp16.onnx_data", "onnx/model_quantized.onnx_data"])
        self.assertEqual(sorted(os.listdir(os.path.join(out, "onnx"))),
                         ["model.onnx", "model_fp16.onnx", "model_fp16.onnx_data", "model_q4.onnx",
                          "model_quantized.onnx", "model_quantized.onnx_data"])
        self.assertLess(os.path.getsize(os.path.join(out, "onnx", "model_fp16.onnx")), 1_000_000)
        with open(os.path.join(out, "config.json"), encoding="utf-8") as f:
            js = json.load(f)["transformers.js_config"]
        # transformers.js reads <file>_data for each file named here (one chunk each).
        self.assertEqual(js, {"use_external_data_format": {"model_fp16.onnx": 1, "model_quantized.onnx": 1}})
        for f, digest in before.items():
            self.assertEqual(sha256(os.path.join(out, "onnx", f)), digest, f)
        self.assertEqual([n for n in os.listdir(self.tmp) if n.startswith(".")], [])
        fp16 = onnx.load(os.path.join(out, "onnx", "model_fp16.onnx"))
        # transformers.js's fp16 convention: float16 weights, float32 inputs and outputs (keep_io_types).
        self.assertEqual({v.type.tensor_type.elem_type for v in fp16.graph.input if v.name.startswith("past")},
                         {onnx.TensorProto.FLOAT})
        self.assertTrue(any(t.data_type == onnx.TensorProto.FLOAT16 for t in fp16.graph.initializer))
        q8 = onnx.load(os.path.join(out, "onnx", "model_quantized.onnx"))
        self.assertTrue(any(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in q8.graph.node))
        for file in ("model_fp16.onnx", "model_quantized.onnx"):
            sess = session(os.path.join(out, "onnx", file))
            for q in self.problems[:5]:
                ids = self.prompt(q)
                self.assertEqual(self.tokenizer.decode(ort_greedy(sess, ids, eos=2)), self.torch_answer(ids), file)

    def test_encoder_decoder_is_refused(self):
        src = os.path.join(self.tmp, "t5")
        os.makedirs(src)
        with open(os.path.join(src, "config.json"), "w", encoding="utf-8") as f:
            json.dump({"model_type": "t5", "architectures": ["T5ForConditionalGeneration"], "is_encoder_decoder": True}, f)
        code, _, err = run_export({"model": src, "output_dir": os.path.join(self.tmp, "t5-onnx"), "dtypes": ["fp32"]})
        self.assertEqual(code, 2, err)
        self.assertIn("encoder-decoder", err)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "t5-onnx")))


@export_tests
class SlidingWindowTest(unittest.TestCase):
    """Models whose config asks for sliding-window attention (Mistral, Gemma 2/3…): the graph keeps the whole KV
    cache (present.* is total_sequence_length long, as the layout says) and applies the window in the mask, so
    generating past the window answers as transformers does. A window of 4 makes a short test go past it."""

    def export_random(self, model_type):
        from transformers import AutoConfig, AutoModelForCausalLM

        tmp = tempfile.mkdtemp(prefix=f"slm-onnx-{model_type}-")
        self.addCleanup(shutil.rmtree, tmp, True)
        cfg = AutoConfig.for_model(model_type, vocab_size=320, hidden_size=64, intermediate_size=128,
                                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   max_position_embeddings=128, sliding_window=4, bos_token_id=1, eos_token_id=2,
                                   pad_token_id=0)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(cfg).eval()
        src = os.path.join(tmp, "src")
        model.save_pretrained(src)
        for f in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy(os.path.join(MODEL, f), src)
        out = os.path.join(tmp, "out")
        # verify off: this test's own comparison is the check.
        code, _, err = run_export({"model": src, "output_dir": out, "dtypes": ["fp32"], "threads": 1, "verify": False})
        self.assertEqual(code, 0, err)
        return model, os.path.join(out, "onnx", "model.onnx")

    def test_generation_past_the_window_matches_transformers(self):
        for model_type in ("mistral", "gemma3_text"):
            model, path = self.export_random(model_type)
            prompt = [1, 3, 281, 283, 282, 284, 285, 4]
            with torch.no_grad():
                out = model.generate(torch.tensor([prompt]), max_new_tokens=12, min_new_tokens=12, do_sample=False)
            expected = out[0][len(prompt):].tolist()
            sess = session(path)
            self.assertEqual(ort_greedy(sess, prompt, eos=-1, max_new=12), expected, model_type)
            # A left-padded batch of two, 9 positions (past the window): logits as transformers gives them, and
            # present.* as long as the whole sequence.
            ids = np.array([[0] + prompt, [5] + prompt], np.int64)
            mask = np.ones_like(ids)
            mask[0, 0] = 0
            positions = np.clip(mask.cumsum(-1) - 1, 0, None)
            feed = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
            for i in sess.get_inputs():
                if i.name.startswith("past_key_values."):
                    feed[i.name] = np.zeros((2, i.shape[1], 0, i.shape[3]), np.float32)
            got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))
            self.assertEqual(got["present.0.key"].shape[2], ids.shape[1], model_type)
            with torch.no_grad():
                want = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                             position_ids=torch.tensor(positions)).logits.numpy()
            self.assertLess(float(np.abs(got["logits"][:, 1:] - want[:, 1:]).max()), 1e-4, model_type)


if __name__ == "__main__":
    unittest.main()
