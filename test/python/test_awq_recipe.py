"""The AWQ side of recipes/quantize_hf.py run as slm runs it (a subprocess with a JSON config) on tiny-arith:
the packed GEMM checkpoint's layout and config; task "dequantize" giving, tensor for tensor, the weights AWQ's own
unpack gives (also from a sharded folder) and A's GPTQ unpack gives (classic and gptq_v2 zeros); the dequantized
and the "scaled" folders load in transformers and still add; clear refusals (unknown architecture, a folder that
is not quantized). Calibration is small (8 windows of 128 tokens) to keep this to seconds."""
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(__file__)
RECIPES = os.path.join(HERE, "..", "..", "recipes")
sys.path.insert(0, RECIPES)
FIXTURE = os.path.abspath(os.path.join(HERE, "..", "fixtures", "tiny-arith"))
HF = os.path.join(FIXTURE, "hf")
LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
           "mlp.up_proj", "mlp.down_proj")

try:
    import safetensors  # noqa: F401
    import torch
    import transformers  # noqa: F401
except ImportError:
    torch = None


def recipe(config, tmp):
    path = os.path.join(tmp, f"cfg-{len(os.listdir(tmp))}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(config, f)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    r = subprocess.run([sys.executable, os.path.join(RECIPES, "quantize_hf.py"), "--config", path],
                       capture_output=True, text=True, env=env, timeout=300)
    events = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    return r.returncode, events, r.stderr


def in_process(config):
    """The recipe's task run in this process (the entry's subprocess is tested once, for the packed checkpoint;
    each further interpreter start would cost seconds). Returns the result data; events go nowhere."""
    from slm_recipes import events as ev
    from slm_recipes.config import quantize_config

    cfg = quantize_config(config)
    with contextlib.redirect_stdout(io.StringIO()):
        if cfg.task == "dequantize":
            from slm_recipes.quant.dequantize import run_dequantize

            return run_dequantize(cfg, ev.Steps(), None)
        from slm_recipes.quant.awq_method import AwqMethod
        from slm_recipes.quant.gptq_method import GptqMethod
        from slm_recipes.quant.pipeline import run_quantize

        method = AwqMethod(cfg) if cfg.method == "awq" else GptqMethod(cfg)
        return run_quantize(cfg, ev.Steps(), None, method)


def awq_config(tmp, name, **extra):
    return {"task": "quantize", "model": HF, "output_dir": os.path.join(tmp, name), "method": "awq", "bits": 4,
            "group_size": 128, "calibration": {"file": os.path.join(FIXTURE, "data", "add-train.jsonl"),
                                               "format": "chat-jsonl"},
            "samples": 8, "seq_len": 128, "device": "cpu", "threads": 1, **extra}


def dequantize_config(tmp, src, name, dtype="float32"):
    return {"task": "dequantize", "model": src, "output_dir": os.path.join(tmp, name), "dtype": dtype, "threads": 1}


def quantize(tmp, name, **extra):
    return recipe(awq_config(tmp, name, **extra), tmp)


def tensors(folder):
    from safetensors.torch import load_file

    out = {}
    for f in sorted(os.listdir(folder)):
        if f.endswith(".safetensors"):
            out.update(load_file(os.path.join(folder, f)))
    return out


def answers(folder, n=10):
    """(right, asked) for greedy answers to the first n add-eval problems."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    right = 0
    with open(os.path.join(FIXTURE, "data", "add-eval.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line)["messages"] for line in f][:n]
    for messages in rows:
        ids = tok.apply_chat_template(messages[:1], add_generation_prompt=True, return_tensors="pt",
                                      return_dict=True)
        out = model.generate(**ids, max_new_tokens=5, do_sample=False)
        text = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()
        right += text == messages[1]["content"]
    return right, len(rows)


@unittest.skipIf(torch is None, "torch, transformers and safetensors are not installed")
class AwqRecipeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        torch.set_num_threads(1)
        cls.tmp = tempfile.mkdtemp(prefix="slm-awq-")
        cls.rc, cls.events, cls.stderr = quantize(cls.tmp, "packed")
        cls.packed = os.path.join(cls.tmp, "packed")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_packed_checkpoint_is_awq_gemm(self):
        self.assertEqual(self.rc, 0, self.stderr)
        result = self.events[-1]
        self.assertEqual(result["type"], "result")
        self.assertEqual(result["data"]["method"], "awq")
        self.assertEqual(result["data"]["quantized_linears"], 28)
        with open(os.path.join(self.packed, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
        self.assertEqual(config["quantization_config"], {"quant_method": "awq", "version": "gemm", "bits": 4,
                                                         "group_size": 128, "zero_point": True})
        t, src = tensors(self.packed), tensors(HF)
        for layer in range(4):
            for name in LINEARS:
                p = f"model.layers.{layer}.{name}"
                self.assertNotIn(f"{p}.weight", t)
                out_f, in_f = src[f"{p}.weight"].shape
                self.assertEqual((t[f"{p}.qweight"].dtype, tuple(t[f"{p}.qweight"].shape)),
                                 (torch.int32, (in_f, out_f // 8)))
                self.assertEqual((t[f"{p}.qzeros"].dtype, tuple(t[f"{p}.qzeros"].shape)),
                                 (torch.int32, (in_f // 128, out_f // 8)))
                self.assertEqual((t[f"{p}.scales"].dtype, tuple(t[f"{p}.scales"].shape)),
                                 (torch.float16, (in_f // 128, out_f)))
            # the scales were folded into the norms: they changed, and stayed float
            norm = f"model.layers.{layer}.input_layernorm.weight"
            self.assertFalse(torch.equal(t[norm], src[norm]))
        for f in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"):
            self.assertTrue(os.path.isfile(os.path.join(self.packed, f)), f)

    def test_dequantize_gives_awq_unpack_and_the_model_still_adds(self):
        from slm_recipes.quant.pack_awq import dequantize as awq_dequantize

        self.assertEqual(self.rc, 0, self.stderr)
        result = in_process(dequantize_config(self.tmp, self.packed, "deq"))
        self.assertEqual((result["method"], result["bits"], result["dtype"], result["tensors"]),
                         ("awq", 4, "float32", 39))
        out = os.path.join(self.tmp, "deq")
        with open(os.path.join(out, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
        self.assertNotIn("quantization_config", config)
        self.assertEqual(config["dtype"], "float32")
        self.assertTrue(os.path.isfile(os.path.join(out, "tokenizer.model")))
        packed, plain = tensors(self.packed), tensors(out)
        for layer in range(4):
            for name in LINEARS:
                p = f"model.layers.{layer}.{name}"
                want = awq_dequantize(packed[f"{p}.qweight"], packed[f"{p}.qzeros"], packed[f"{p}.scales"])
                self.assertTrue(torch.equal(plain[f"{p}.weight"], want), p)
                self.assertNotIn(f"{p}.qweight", plain)
        self.assertTrue(torch.equal(plain["lm_head.weight"], packed["lm_head.weight"]))
        right, asked = answers(out)
        self.assertGreaterEqual(right, asked - 1)

    def test_dequantize_reads_a_sharded_checkpoint(self):
        from safetensors.torch import save_file

        self.assertEqual(self.rc, 0, self.stderr)
        sharded = os.path.join(self.tmp, "sharded")
        shutil.copytree(self.packed, sharded)
        os.remove(os.path.join(sharded, "model.safetensors"))
        t = tensors(self.packed)
        # a linear's qweight in one shard, its qzeros and scales in the other
        first = {k: v for k, v in t.items() if k.endswith(".qweight") or k.startswith("model.embed")}
        second = {k: v for k, v in t.items() if k not in first}
        save_file(first, os.path.join(sharded, "model-00001-of-00002.safetensors"))
        save_file(second, os.path.join(sharded, "model-00002-of-00002.safetensors"))
        index = {"metadata": {}, "weight_map": {**{k: "model-00001-of-00002.safetensors" for k in first},
                                                **{k: "model-00002-of-00002.safetensors" for k in second}}}
        with open(os.path.join(sharded, "model.safetensors.index.json"), "w", encoding="utf-8") as f:
            json.dump(index, f)
        in_process(dequantize_config(self.tmp, sharded, "deq-sharded"))
        in_process(dequantize_config(self.tmp, self.packed, "deq-single"))
        a, b = tensors(os.path.join(self.tmp, "deq-sharded")), tensors(os.path.join(self.tmp, "deq-single"))
        self.assertEqual(sorted(a), sorted(b))
        for k in a:
            self.assertTrue(torch.equal(a[k], b[k]), k)

    def test_scaled_output_is_a_plain_folder_that_still_adds(self):
        result = in_process(awq_config(self.tmp, "scaled", output="scaled"))
        self.assertEqual(result["output"], "scaled")
        out = os.path.join(self.tmp, "scaled")
        with open(os.path.join(out, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
        self.assertNotIn("quantization_config", config)
        self.assertEqual(config["dtype"], "float32")  # the source's
        t, src = tensors(out), tensors(HF)
        self.assertEqual(sorted(t), sorted(src))
        self.assertEqual({v.dtype for v in t.values()}, {torch.float32})
        moved = [k for k in src if not torch.equal(t[k], src[k])]
        self.assertIn("model.layers.0.input_layernorm.weight", moved)
        self.assertIn("model.layers.0.mlp.down_proj.weight", moved)
        self.assertNotIn("model.embed_tokens.weight", moved)
        right, asked = answers(out)
        self.assertGreaterEqual(right, asked - 1)


@unittest.skipIf(torch is None, "torch, transformers and safetensors are not installed")
class AwqQwen2MultiHeadTest(unittest.TestCase):
    """A small random Qwen2 with full multi-head attention and biases on q/k/v (random, so that they matter): the
    v → o group applies (v's output rows and bias divided by s) and the written checkpoint, dequantized, is closer
    to the float model than round-to-nearest's on the same grid."""

    def test_value_to_output_group_and_checkpoint_round_trip(self):
        from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

        tmp = tempfile.mkdtemp(prefix="slm-awq-qwen2-")
        self.addCleanup(shutil.rmtree, tmp, True)
        src = os.path.join(tmp, "qwen2")
        torch.manual_seed(0)
        config = Qwen2Config(vocab_size=320, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                             bos_token_id=1, eos_token_id=2, pad_token_id=0)
        model = Qwen2ForCausalLM(config).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith(".bias"):
                    p.normal_(0, 0.5)
        model.save_pretrained(src)
        for f in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy(os.path.join(HF, f), src)
        result = in_process({**awq_config(tmp, "awq"), "model": src})
        self.assertEqual([(g["block"], g["group"]) for g in result["awq_groups"]],
                         [(b, g) for b in (0, 1) for g in ("qkv", "o", "gate_up", "down")])
        in_process({"task": "quantize", "model": src, "output_dir": os.path.join(tmp, "rtn"), "method": "rtn",
                    "bits": 4, "group_size": 128, "sym": False, "device": "cpu", "threads": 1})
        errors = {}
        x = torch.randint(5, 300, (4, 64), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            ref = model(x).logits
            for name in ("awq", "rtn"):
                in_process(dequantize_config(tmp, os.path.join(tmp, name), f"{name}-deq"))
                q = AutoModelForCausalLM.from_pretrained(os.path.join(tmp, f"{name}-deq"), dtype=torch.float32)
                errors[name] = float((q(x).logits - ref).norm() / ref.norm())
        self.assertLess(errors["awq"], errors["rtn"], errors)


@unittest.skipIf(torch is None, "torch, transformers and safetensors are not installed")
class GptqDequantizeTest(unittest.TestCase):
    """Dequantizing slm's own round-to-nearest GPTQ checkpoint (no calibration needed) gives A's unpack, and the
    same weights when its zeros are rewritten in the gptq_v2 form (stored as they are, not minus one)."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="slm-gptq-deq-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_gptq_classic_and_v2(self):
        from safetensors.torch import save_file

        from slm_recipes.quant import pack_gptq

        cfg = {"task": "quantize", "model": HF, "output_dir": os.path.join(self.tmp, "rtn"), "method": "rtn",
               "bits": 4, "group_size": 128, "sym": False, "device": "cpu", "threads": 1}
        in_process(cfg)
        classic = os.path.join(self.tmp, "rtn")
        v2 = os.path.join(self.tmp, "rtn-v2")
        shutil.copytree(classic, v2)
        t = tensors(classic)
        for k in [k for k in t if k.endswith(".qzeros")]:
            t[k] = pack_gptq.pack_cols(pack_gptq.unpack_cols(t[k], 4) + 1, 4)
        save_file(t, os.path.join(v2, "model.safetensors"))
        with open(os.path.join(v2, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
        config["quantization_config"]["checkpoint_format"] = "gptq_v2"
        config["quantization_config"].pop("format", None)
        with open(os.path.join(v2, "config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f)
        for src, name in ((classic, "deq"), (v2, "deq-v2")):
            self.assertEqual(in_process(dequantize_config(self.tmp, src, name))["method"], "gptq")
        packed = tensors(classic)
        a, b = tensors(os.path.join(self.tmp, "deq")), tensors(os.path.join(self.tmp, "deq-v2"))
        prefixes = [k[: -len(".qweight")] for k in packed if k.endswith(".qweight")]
        self.assertEqual(len(prefixes), 28)
        for p in prefixes:
            want = pack_gptq.dequantize({k: packed[f"{p}.{k}"] for k in ("qweight", "qzeros", "scales", "g_idx")}, 4)
            self.assertTrue(torch.equal(a[f"{p}.weight"], want), p)
            self.assertTrue(torch.equal(b[f"{p}.weight"], want), p)


@unittest.skipIf(torch is None, "torch, transformers and safetensors are not installed")
class RefusalsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="slm-awq-bad-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_unknown_architecture_names_the_supported_ones_and_writes_nothing(self):
        model = os.path.join(self.tmp, "model")
        shutil.copytree(HF, model)
        with open(os.path.join(model, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
        config.update(model_type="gemma", architectures=["GemmaForCausalLM"])
        with open(os.path.join(model, "config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f)
        cfg = {"task": "quantize", "model": model, "output_dir": os.path.join(self.tmp, "out"), "method": "awq",
               "calibration": {"file": os.path.join(FIXTURE, "data", "add-train.jsonl"), "format": "chat-jsonl"}}
        from slm_recipes.errors import ConfigError

        with self.assertRaises(ConfigError) as e:
            in_process(cfg)
        self.assertIn("gemma (GemmaForCausalLM)", str(e.exception))
        self.assertIn("llama, mistral, qwen2, qwen3", str(e.exception))
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "out")))

    def test_dequantize_refuses_a_folder_that_is_not_quantized(self):
        from slm_recipes.errors import ConfigError

        with self.assertRaises(ConfigError) as e:
            in_process(dequantize_config(self.tmp, HF, "out"))
        self.assertIn("not a quantized checkpoint", str(e.exception))
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "out")))


if __name__ == "__main__":
    unittest.main()
