"""The GPTQ recipe on the tiny-arith model, end to end (each test quantizes it, some several times, so they run
in their own vitest file, test/unit/gptqModel.test.ts, which sets SLM_GPTQ_MODEL_TESTS=1 and LLAMA_CPP_DIR; test/python's
discovery run skips them):
- GPTQ beats round-to-nearest on the same grid on held-out windows, and the checkpoint's files;
- SIGINT inside the blocks: exit 130, no folder;
- the independent reader: llama.cpp's own convert_hf_to_gguf.py (the converter slm's way back to GGUF uses) reads
  the checkpoints and, with --outtype f32, writes exactly the weights the recipe's dequantization gives — tensor for
  tensor, max difference 0 — for 4-bit g128 with and without act-order, 2-bit asymmetric and 8-bit per channel;
  untouched tensors come through as the source's. LLAMA_CPP_DIR: a llama.cpp checkout's Python side
  (convert_hf_to_gguf.py, gguf-py/)."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import unittest
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(__file__))

from quant_fixture import (ADD_TRAIN, CALIBRATION, HELD_OUT, MODEL, ROOT, SEQ_LEN, config,  # noqa: E402
                           dequantized_linears, quantize)

LLAMA_CPP = os.environ.get("LLAMA_CPP_DIR")
try:
    import numpy
    import safetensors  # noqa: F401
    import torch
    import transformers  # noqa: F401
except ImportError:
    torch = None


def model_tests(cls):
    cls = unittest.skipIf(torch is None, "torch, numpy, transformers and safetensors are not installed")(cls)
    return unittest.skipUnless(os.environ.get("SLM_GPTQ_MODEL_TESTS") == "1",
                               "quantizes tiny-arith several times: run by test/unit/gptqModel.test.ts "
                               "(or set SLM_GPTQ_MODEL_TESTS=1)")(cls)


@model_tests
class GptqBeatsRtnTest(unittest.TestCase):
    """Summed over tiny-arith's 28 linears, ‖WX − ŴX‖ on held-out windows (inputs from the float model) is lower
    for GPTQ than for round-to-nearest on the same grid."""

    @classmethod
    def setUpClass(cls):
        from slm_recipes.quant.blocks import load_model
        from slm_recipes.quant.calibration import load_calibration
        from transformers import AutoTokenizer

        cls.tmp = tempfile.TemporaryDirectory()
        torch.manual_seed(0)
        cls.folders = {}
        for method in ("gptq", "rtn"):
            for bits in (4, 2):
                out = os.path.join(cls.tmp.name, f"{method}{bits}")
                cls.folders[(method, bits)] = out
                # desc_act means nothing to round-to-nearest (asked for here, and not claimed by its checkpoint).
                quantize(out, method=method, bits=bits, desc_act=method == "rtn")
        tok = AutoTokenizer.from_pretrained(MODEL)
        cal = SimpleNamespace(calibration=SimpleNamespace(file=ADD_TRAIN, format="chat-jsonl"),
                              samples=CALIBRATION + HELD_OUT, seq_len=SEQ_LEN)
        held_out = load_calibration(cal, tok, 256)[CALIBRATION:]
        model = load_model(MODEL)
        cls.weights, cls.grams = {}, {}
        handles = []
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.Linear) and ".layers." in name:
                cls.weights[name] = m.weight.detach().clone()

                def hook(module, args, name=name):
                    x = args[0].reshape(-1, args[0].shape[-1]).double()
                    cls.grams[name] = cls.grams.get(name, 0) + x.t() @ x
                handles.append(m.register_forward_pre_hook(hook))
        with torch.no_grad():
            model(input_ids=held_out)
        for h in handles:
            h.remove()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def held_out_error(self, folder):
        """(Σ ‖ΔW X‖_F over the linears, Σ ‖ΔW X‖² / Σ ‖W X‖²)."""
        deq = dequantized_linears(folder)
        self.assertEqual(sorted(deq), sorted(self.weights))
        total, squares, reference = 0.0, 0.0, 0.0
        for name, w in self.weights.items():
            d = (w - deq[name]).double()
            e2 = float(((d @ self.grams[name]) * d).sum())
            total += e2 ** 0.5
            squares += e2
            reference += float(((w.double() @ self.grams[name]) * w.double()).sum())
        return total, squares / reference

    def test_gptq_beats_rtn_at_4_and_2_bits(self):
        errors = {k: self.held_out_error(f) for k, f in self.folders.items()}
        if os.environ.get("SLM_TEST_VERBOSE"):
            print("\n" + json.dumps({f"{m}{b}": e for (m, b), e in errors.items()}), file=sys.stderr)
        for bits in (4, 2):
            self.assertLess(errors[("gptq", bits)][0], errors[("rtn", bits)][0], f"{bits}-bit: {errors}")
        # And the checkpoint holds the weights the algorithm meant: a 4-bit model's layers keep their outputs to
        # within a fraction of a percent (an off-by-one zero point or a misplaced group would not).
        self.assertLess(errors[("gptq", 4)][1], 0.0005, errors)

    def test_rtn_checkpoint_claims_no_act_order(self):
        folder = self.folders[("rtn", 4)]
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            self.assertFalse(json.load(f)["quantization_config"]["desc_act"])
        from safetensors.torch import load_file

        g_idx = load_file(os.path.join(folder, "model.safetensors"))["model.layers.1.mlp.down_proj.g_idx"]
        self.assertEqual(g_idx.tolist(), [i // 128 for i in range(768)])

    def test_checkpoint_files(self):
        folder = self.folders[("gptq", 4)]
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        self.assertEqual(cfg["quantization_config"], {
            "quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": True,
            "damp_percent": 0.01, "true_sequential": True, "static_groups": False, "checkpoint_format": "gptq",
            "format": "gptq"})
        self.assertEqual(cfg["dtype"], "float16")
        with open(os.path.join(folder, "quantize_config.json"), encoding="utf-8") as f:
            self.assertEqual(json.load(f)["checkpoint_format"], "gptq")
        self.assertEqual(sorted(os.listdir(folder)), ["config.json", "generation_config.json", "model.safetensors",
                                                      "quantize_config.json", "special_tokens_map.json",
                                                      "tokenizer.model", "tokenizer_config.json"])
        from safetensors.torch import load_file

        out, src = load_file(os.path.join(folder, "model.safetensors")), load_file(os.path.join(MODEL, "model.safetensors"))
        q = "model.layers.0.mlp.down_proj"
        self.assertEqual((out[f"{q}.qweight"].shape, out[f"{q}.qweight"].dtype), ((96, 256), torch.int32))
        self.assertEqual((out[f"{q}.qzeros"].shape, out[f"{q}.qzeros"].dtype), ((6, 32), torch.int32))
        self.assertEqual((out[f"{q}.scales"].shape, out[f"{q}.scales"].dtype), ((6, 256), torch.float16))
        self.assertEqual((out[f"{q}.g_idx"].shape, out[f"{q}.g_idx"].dtype), ((768,), torch.int32))
        self.assertNotIn(f"{q}.weight", out)
        # Tensors that are not quantized are the source's, bit for bit.
        for name in ("model.embed_tokens.weight", "lm_head.weight", "model.norm.weight",
                     "model.layers.3.post_attention_layernorm.weight"):
            self.assertTrue(torch.equal(out[name], src[name]), name)
        self.assertEqual(len([k for k in out if k.endswith(".qweight")]), 28)
        # The weights are as readable as the folder's other files (safetensors alone makes them owner-only).
        mode = lambda name: os.stat(os.path.join(folder, name)).st_mode & 0o777  # noqa: E731
        self.assertEqual(mode("model.safetensors"), mode("config.json"))




@model_tests
class InterruptTest(unittest.TestCase):
    def test_sigint_inside_the_blocks_exits_130_and_leaves_no_folder(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "out")
            cfg_path = os.path.join(d, "cfg.json")
            with open(cfg_path, "w") as f:
                # Enough calibration for several seconds of work: the signal lands well before the end.
                json.dump(config(out, threads=1, samples=32, seq_len=256), f)
            p = subprocess.Popen([sys.executable, os.path.join(ROOT, "recipes", "quantize_hf.py"), "--config", cfg_path],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            events = []
            for line in p.stdout:
                events.append(json.loads(line))
                if events[-1]["type"] == "progress":  # block 0 starts: its Hessians are being collected
                    p.send_signal(signal.SIGINT)
                    break
            rest, err = p.communicate(timeout=120)
            events += [json.loads(x) for x in rest.splitlines()]
            self.assertEqual(p.returncode, 130, err[-2000:])
            self.assertFalse(os.path.exists(out))
            self.assertEqual(events[-1]["type"], "step")
            self.assertEqual((events[-1]["id"], events[-1]["status"]), ("quantize:layers", "fail"))
            self.assertFalse(any(e["type"] == "result" for e in events))
            self.assertIn("cancelled", err)




VARIANTS = {
    "4bit-g128": {"bits": 4, "group_size": 128},
    "4bit-g128-act-order": {"bits": 4, "group_size": 128, "desc_act": True},
    "2bit-g128-asym": {"bits": 2, "group_size": 128, "sym": False},
    "8bit-per-channel": {"bits": 8, "group_size": -1},
}


def rope_rows(w, heads):
    """llama.cpp stores a Llama q/k projection with each head's rows reordered for its RoPE layout: the rows
    (first half, second half) of a head become interleaved pairs."""
    out, cols = w.shape
    return w.reshape(heads, 2, out // heads // 2, cols).transpose(1, 2).reshape(out, cols)


@model_tests
@unittest.skipUnless(LLAMA_CPP and os.path.isfile(os.path.join(LLAMA_CPP, "convert_hf_to_gguf.py")),
                     "LLAMA_CPP_DIR (a llama.cpp checkout with convert_hf_to_gguf.py) is not set")
class ConverterReadsGptqTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        sys.path.insert(0, os.path.join(LLAMA_CPP, "gguf-py"))
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def convert(self, folders):
        """Runs the converter's own main() on each folder (--outtype f32), in one process: torch and transformers
        are imported once instead of once per folder."""
        code = ("import sys, convert_hf_to_gguf as c\n"
                "for f in sys.argv[1:]:\n"
                "    sys.argv = ['convert_hf_to_gguf.py', f, '--outtype', 'f32', '--outfile', f + '.gguf']\n"
                "    c.main()\n")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(LLAMA_CPP, "gguf-py"), LLAMA_CPP]))
        r = subprocess.run([sys.executable, "-c", code, *folders], capture_output=True, text=True, env=env,
                           timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        return [f + ".gguf" for f in folders]

    def test_converter_gives_exactly_the_recipes_dequantized_weights(self):
        import gguf
        from safetensors.torch import load_file

        source = load_file(os.path.join(MODEL, "model.safetensors"))
        names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 4)
        folders = {v: os.path.join(self.tmp.name, v) for v in VARIANTS}
        for variant, over in VARIANTS.items():
            quantize(folders[variant], **over)
        files = dict(zip(VARIANTS, self.convert(list(folders.values()))))
        for variant in VARIANTS:
            with self.subTest(variant=variant):
                ours = dequantized_linears(folders[variant])
                self.assertEqual(len(ours), 28)
                theirs = {t.name: numpy.array(t.data) for t in gguf.GGUFReader(files[variant]).tensors}
                compared = 0
                for hf_name, tensor in source.items():
                    module = hf_name[: -len(".weight")]
                    expected = ours[module] if module in ours else tensor.float()
                    if module.endswith("q_proj"):
                        expected = rope_rows(expected, 8)
                    elif module.endswith("k_proj"):
                        expected = rope_rows(expected, 4)
                    got = theirs[names.get_name(hf_name, try_suffixes=(".weight",))]
                    self.assertEqual(got.dtype, numpy.float32, hf_name)
                    self.assertEqual(got.shape, tuple(expected.shape), hf_name)
                    diff = float(numpy.abs(got - expected.numpy()).max())
                    self.assertEqual(diff, 0.0, f"{variant} {hf_name}: max difference {diff}")
                    compared += 1
                self.assertEqual(compared, len(theirs))


if __name__ == "__main__":
    unittest.main()
