"""Tests of the GPTQ recipe (recipes/quantize_hf.py, slm_recipes/quant): the config validator (no torch), the
checkpoint format against words worked out by hand, the grid, GPTQ's lazy blocked algorithm against a plain
column-by-column reference, GPTQ beating round-to-nearest on held-out data, calibration windows, and Ctrl+C.
The torch tests skip where torch/transformers are not installed (npm test on a machine without the ML stack).
The independent-reader test (llama.cpp's converter) is test_gptq_reader.py."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import unittest
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(__file__))

from quant_fixture import ADD_TRAIN, CALIBRATION, FIXTURE, HELD_OUT, MODEL, ROOT, SEQ_LEN, config  # noqa: E402
from slm_recipes.config import quantize_config  # noqa: E402
from slm_recipes.errors import ConfigError, RecipeError  # noqa: E402

try:
    import torch
    import transformers  # noqa: F401
    import safetensors  # noqa: F401
except ImportError:
    torch = None
needs_torch = unittest.skipIf(torch is None, "torch, transformers and safetensors are not installed")


def s32(word):
    """A 32-bit word written in hex, as the int32 the checkpoint stores (two's complement)."""
    return word - (1 << 32) if word >= 1 << 31 else word


class QuantizeConfigTest(unittest.TestCase):
    def test_defaults(self):
        c = quantize_config(config("/tmp/slm-gptq-none", bits=4))
        self.assertEqual((c.task, c.method, c.output, c.bits, c.group_size, c.desc_act, c.sym, c.damp),
                         ("quantize", "gptq", "packed", 4, 128, False, True, 0.01))
        self.assertEqual(c.calibration.format, "chat-jsonl")
        self.assertIsNone(quantize_config(config("/tmp/x", method="rtn", calibration=None)).calibration)

    def assertConfigError(self, pattern, **over):
        with self.assertRaisesRegex(ConfigError, pattern):
            quantize_config({**config("/tmp/slm-gptq-none"), **over})

    def test_errors(self):
        self.assertConfigError("3-bit GPTQ is not supported.*llama.cpp's convert_hf_to_gguf.py", bits=3)
        self.assertConfigError("'bits' must be 2, 4 or 8", bits=5)
        self.assertConfigError("'calibration' is required for gptq and awq", calibration=None)
        self.assertConfigError("'format' must be one of 'text', 'chat-jsonl'", calibration={"file": ADD_TRAIN, "format": "csv"})
        self.assertConfigError("calibration.file: .* does not exist", calibration={"file": "/no/such", "format": "text"})
        self.assertConfigError("\"scaled\" .* for method \"awq\" only", output="scaled")
        self.assertConfigError("AWQ's GEMM checkpoint format is 4-bit only", method="awq", bits=8)
        self.assertConfigError("'group_size' must be -1", group_size=0)
        self.assertConfigError("'damp' must be a number > 0", damp=0)
        self.assertConfigError("'method' must be one of 'gptq', 'awq', 'rtn'", method="hqq")
        self.assertConfigError("unknown key.*'act_order'", act_order=True)
        self.assertConfigError("model: .* has no config.json", model=FIXTURE)
        with tempfile.TemporaryDirectory() as d:
            open(os.path.join(d, "x"), "w").close()
            self.assertConfigError("output_dir: .* already exists and is not an empty folder", output_dir=d)

    def test_dequantize_task_takes_only_its_keys(self):
        c = quantize_config({"task": "dequantize", "model": MODEL, "output_dir": "/tmp/x", "dtype": "bfloat16"})
        self.assertEqual((c.task, c.dtype), ("dequantize", "bfloat16"))
        with self.assertRaisesRegex(ConfigError, "unknown key.*'bits'"):
            quantize_config({"task": "dequantize", "model": MODEL, "output_dir": "/tmp/x", "bits": 4})


class OutputFolderTest(unittest.TestCase):
    def test_failure_leaves_no_folder_and_an_empty_given_folder_empty(self):
        from slm_recipes.quant.checkpoint import output_folder

        with tempfile.TemporaryDirectory() as d:
            made = os.path.join(d, "new")
            with self.assertRaises(KeyboardInterrupt):
                with output_folder(made):
                    open(os.path.join(made, "model.safetensors"), "w").close()
                    raise KeyboardInterrupt
            self.assertFalse(os.path.exists(made))
            given = os.path.join(d, "given")
            os.mkdir(given)
            with self.assertRaises(RecipeError):
                with output_folder(given):
                    os.mkdir(os.path.join(given, "sub"))
                    open(os.path.join(given, "config.json"), "w").close()
                    raise RecipeError("boom")
            self.assertEqual(os.listdir(given), [])


@needs_torch
class PackTest(unittest.TestCase):
    """Words worked out by hand from the format: levels packed along the input (qweight) or output (qzeros)
    dimension, the first value in the lowest bits; qzeros holds zero − 1."""

    def check(self, bits, q, zeros, scales, g_idx, qweight, qzeros, rows):
        from slm_recipes.quant import pack_gptq

        q, zeros = torch.tensor(q, dtype=torch.int32), torch.tensor(zeros, dtype=torch.int32)
        scales, g_idx = torch.tensor(scales, dtype=torch.float16), torch.tensor(g_idx, dtype=torch.int32)
        packed = pack_gptq.pack(q, scales.float(), zeros, g_idx, bits)
        self.assertEqual(packed["qweight"].dtype, torch.int32)
        self.assertEqual(packed["qweight"].tolist(), qweight)
        self.assertEqual(packed["qzeros"].dtype, torch.int32)
        self.assertEqual(packed["qzeros"].tolist(), qzeros)
        self.assertEqual(packed["scales"].dtype, torch.float16)
        self.assertEqual(packed["g_idx"].tolist(), g_idx.tolist())
        # And back, from the hand-written words.
        stored = {"qweight": torch.tensor(qweight, dtype=torch.int32), "qzeros": torch.tensor(qzeros, dtype=torch.int32),
                  "scales": scales, "g_idx": g_idx}
        uq, uz, _, ug = pack_gptq.unpack(stored, bits)
        self.assertEqual(uq.tolist(), q.tolist())
        self.assertEqual(uz.tolist(), zeros.tolist())
        self.assertEqual(ug.tolist(), g_idx.tolist())
        w = pack_gptq.dequantize(stored, bits)
        self.assertEqual(w.dtype, torch.float32)
        for o, row in rows.items():
            self.assertEqual(w[o].tolist(), row)

    def test_4bit_groups_of_4(self):
        q = [[(o + i) % 16 for i in range(8)] for o in range(8)]
        zeros = [[1, 2, 3, 4, 5, 6, 7, 8], [8] * 8]
        scales = [[0.5] * 8, [0.25] * 8]
        qweight = [[0x76543210, s32(0x87654321), s32(0x98765432), s32(0xA9876543), s32(0xBA987654),
                    s32(0xCBA98765), s32(0xDCBA9876), s32(0xEDCBA987)]]
        qzeros = [[0x76543210], [0x77777777]]
        # W[o, i] = scale[g, o] · (q − zero[g, o]) with g = i // 4.
        rows = {0: [-0.5, 0, 0.5, 1, -1, -0.75, -0.5, -0.25], 1: [-0.5, 0, 0.5, 1, -0.75, -0.5, -0.25, 0]}
        self.check(4, q, zeros, scales, [0, 0, 0, 0, 1, 1, 1, 1], qweight, qzeros, rows)

    def test_4bit_act_order(self):
        # The same words; g_idx sends the columns to their groups in act-order's scattered way.
        q = [[(o + i) % 16 for i in range(8)] for o in range(8)]
        zeros = [[1, 2, 3, 4, 5, 6, 7, 8], [8] * 8]
        scales = [[0.5] * 8, [0.25] * 8]
        qweight = [[0x76543210, s32(0x87654321), s32(0x98765432), s32(0xA9876543), s32(0xBA987654),
                    s32(0xCBA98765), s32(0xDCBA9876), s32(0xEDCBA987)]]
        rows = {0: [-2, 0, -1.5, 1, 1.5, -0.75, -0.5, 3], 1: [-1.75, 0, -1.25, 1, 1.5, -0.5, -0.25, 3]}
        self.check(4, q, zeros, scales, [1, 0, 1, 0, 0, 1, 1, 0], qweight, [[0x76543210], [0x77777777]], rows)

    def test_2bit(self):
        q = [[(i + o) % 4 for i in range(16)] for o in range(16)]
        zeros = [[o % 3 + 1 for o in range(16)]]
        words = [s32(0xE4E4E4E4), 0x39393939, 0x4E4E4E4E, s32(0x93939393)]
        rows = {0: [-1, 0, 1, 2] * 4, 1: [-1, 0, 1, -2] * 4}
        self.check(2, q, zeros, [[1.0] * 16], [0] * 16, [[words[o % 4] for o in range(16)]], [[0x24924924]], rows)

    def test_2bit_act_order(self):
        q = [[(i + o) % 4 for i in range(16)] for o in range(16)]
        zeros = [[1] * 16, [3] * 16]
        g_idx = [1, 0] * 8
        words = [s32(0xE4E4E4E4), 0x39393939, 0x4E4E4E4E, s32(0x93939393)]
        # Row 0: q = 0,1,2,3,…; odd columns in group 0 (zero 1, scale 1), even ones in group 1 (zero 3, scale 2).
        rows = {0: [-6, 0, -2, 2] * 4}
        self.check(2, q, zeros, [[1.0] * 16, [2.0] * 16], g_idx, [[words[o % 4] for o in range(16)]],
                   [[0], [s32(0xAAAAAAAA)]], rows)

    def test_8bit(self):
        q = [[1, 2, 3, 4], [255, 0, 0, 128], [16, 32, 48, 64], [0, 0, 0, 0]]
        zeros = [[128, 1, 255, 129]]
        rows = {0: [-127, -126, -125, -124], 1: [254, -1, -1, 127], 2: [-119.5, -111.5, -103.5, -95.5],
                3: [-258, -258, -258, -258]}
        self.check(8, q, zeros, [[1, 1, 0.5, 2]], [0] * 4,
                   [[0x04030201, s32(0x800000FF), 0x40302010, 0]], [[s32(0x80FE007F)]], rows)

    def test_8bit_act_order(self):
        q = [[1, 2, 3, 4], [255, 0, 0, 128], [16, 32, 48, 64], [0, 0, 0, 0]]
        zeros = [[128, 1, 255, 129], [1, 1, 1, 1]]
        rows = {1: [254, -1, -1, 127], 2: [-119.5, 31, -103.5, 63]}
        self.check(8, q, zeros, [[1, 1, 0.5, 2], [1, 1, 1, 1]], [0, 1, 0, 1],
                   [[0x04030201, s32(0x800000FF), 0x40302010, 0]], [[s32(0x80FE007F)], [0]], rows)

    def test_refusals(self):
        from slm_recipes.quant import pack_gptq

        ones = torch.ones(1, 8, dtype=torch.int32)
        with self.assertRaisesRegex(RecipeError, "cannot store a zero point of 0"):
            pack_gptq.pack(torch.zeros(8, 8, dtype=torch.int32), torch.ones(1, 8), ones * 0, torch.zeros(8), 4)
        with self.assertRaisesRegex(RecipeError, "supports 2, 4, 8 bits, not 3"):
            pack_gptq.pack(torch.zeros(32, 32, dtype=torch.int32), torch.ones(1, 32), torch.ones(1, 32), torch.zeros(32), 3)
        with self.assertRaisesRegex(RecipeError, "not a multiple of 8"):
            pack_gptq.pack(torch.zeros(8, 12, dtype=torch.int32), torch.ones(1, 8), ones, torch.zeros(12), 4)


@needs_torch
class GridTest(unittest.TestCase):
    def test_sym_and_asym(self):
        from slm_recipes.quant import grid

        w = torch.tensor([[-1.0, 0.0, 0.5, 0.75], [0.0, 0.5, 1.0, 1.5]])
        scale, zero = grid.fit(w, 2, sym=True)
        self.assertEqual(zero.tolist(), [2, 2])  # the middle of 0…3
        self.assertEqual(scale.tolist(), [torch.tensor(2 / 3).half().item(), 1.0])  # 2·max|w| / 3, as float16 holds it
        scale, zero = grid.fit(w, 2, sym=False)
        self.assertEqual(scale.tolist(), [torch.tensor(1.75 / 3).half().item(), 0.5])
        self.assertEqual(zero.tolist(), [2, 0])
        q = grid.quantize(w, scale, zero, 2)
        self.assertEqual(grid.dequantize(q, scale, zero)[1].tolist(), [0, 0.5, 1, 1.5])

    def test_classic_format_zero_is_at_least_one(self):
        from slm_recipes.quant import grid

        # All weights ≥ 0 want zero 0, which "gptq" checkpoints cannot store: zero 1, and the scale still reaches
        # the maximum (1.5 = 0.75 · (3 − 1)).
        w = torch.tensor([[0.0, 0.5, 1.0, 1.5]])
        scale, zero = grid.fit(w, 2, sym=False, min_zero=1)
        self.assertEqual((scale.tolist(), zero.tolist()), ([0.75], [1]))
        self.assertEqual(grid.dequantize(grid.quantize(w, scale, zero, 2), scale, zero).tolist(), [[0, 0.75, 0.75, 1.5]])


def reference_gptq(w, h, bits, group_size, sym, damp):
    """GPTQ as the paper's Algorithm states it before its speed-ups: quantize one column, spread its error over every
    remaining column with the current inverse Hessian, drop the column from the inverse (Gaussian elimination);
    a group's grid is fitted from the group's current weights when its first column comes up. float64."""
    from slm_recipes.quant import grid

    w, h = w.double().clone(), h.double().clone()
    h += damp * torch.mean(torch.diagonal(h)) * torch.eye(h.shape[0], dtype=h.dtype)
    hinv = torch.linalg.inv(h)
    deq = torch.zeros_like(w)
    for j in range(w.shape[1]):
        if j % group_size == 0:
            scale, zero = grid.fit(w[:, j:j + group_size].float(), bits, sym, min_zero=1)
        dq = grid.dequantize(grid.quantize(w[:, j:j + 1].float(), scale, zero, bits), scale, zero).double()[:, 0]
        deq[:, j] = dq
        err = (w[:, j] - dq) / hinv[j, j]
        w[:, j:] -= torch.outer(err, hinv[j, j:])
        hinv -= torch.outer(hinv[:, j], hinv[j, :]) / hinv[j, j]
    return deq


@needs_torch
class GptqAlgorithmTest(unittest.TestCase):
    def test_lazy_blocks_and_groups_match_the_plain_algorithm(self):
        from slm_recipes.quant.gptq import Hessian, Prepared, gptq_quantize, output_error

        g = torch.Generator().manual_seed(0)
        cols = 320  # three lazy blocks of 128 columns (the last one short)
        x = torch.randn(2000, cols, generator=g) @ torch.randn(cols, cols, generator=g) * 0.1
        w = torch.randn(24, cols, generator=g)
        h = Hessian(cols, torch.device("cpu"))
        for part in x.split(700):
            h.add(part)
        self.assertTrue(torch.allclose(h.matrix, 2 * x.t() @ x / x.shape[0], rtol=1e-4, atol=1e-4))
        # Groups of 32 sit inside blocks; groups of 96 and 192 straddle block ends, where the group's later
        # columns must include the pending updates of the block's columns already done.
        for group in (32, 96, 192):
            prepared = Prepared(h.matrix, 0.01, act_order=False)
            q, scales, zeros, g_idx, deq = gptq_quantize(w, prepared, 3 if group == 96 else 4, group, sym=group != 96)
            ref = reference_gptq(w, h.matrix, 3 if group == 96 else 4, group, group != 96, 0.01).float()
            same = (deq == ref).float().mean().item()
            self.assertGreater(same, 0.995, f"group {group}: {same:.4f} of the weights agree")
            self.assertEqual(g_idx.tolist(), [i // group for i in range(cols)])
            self.assertAlmostEqual(output_error(w, deq, h.matrix), output_error(w, ref, h.matrix), places=4)

    def test_act_order_permutes_and_maps_groups(self):
        from slm_recipes.quant.gptq import Hessian, Prepared, gptq_quantize

        g = torch.Generator().manual_seed(1)
        x = torch.randn(500, 64, generator=g) * torch.linspace(0.1, 3, 64)
        x[:, 5] = 0  # a dead input: its weights become 0
        h = Hessian(64, torch.device("cpu"))
        h.add(x)
        w = torch.randn(8, 64, generator=g)
        prepared = Prepared(h.matrix, 0.01, act_order=True)
        q, scales, zeros, g_idx, deq = gptq_quantize(w, prepared, 4, 16, sym=True)
        order = torch.argsort(torch.diagonal(h.matrix), descending=True)
        # The inputs with the largest Hessian diagonal come first, in group 0.
        self.assertEqual(g_idx[order].tolist(), [i // 16 for i in range(64)])
        self.assertEqual(int(g_idx[63]), 0)
        self.assertEqual(deq[:, 5].abs().max().item(), 0)
        # Every weight is its group's scale · (q − zero).
        gi = g_idx.long()
        self.assertTrue(torch.equal(deq, scales[gi].t() * (q - zeros[gi].t()).float()))


@needs_torch
class GptqBeatsRtnTest(unittest.TestCase):
    """Summed over tiny-arith's 28 linears, ‖WX − ŴX‖ on held-out windows (inputs from the float model) is lower
    for GPTQ than for round-to-nearest on the same grid."""

    @classmethod
    def setUpClass(cls):
        from quant_fixture import quantize
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
                quantize(out, method=method, bits=bits)
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
        from quant_fixture import dequantized_linears

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


@needs_torch
class CalibrationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from transformers import AutoTokenizer

        cls.tok = AutoTokenizer.from_pretrained(MODEL)

    def windows(self, path, fmt, samples, seq_len, cap=256):
        from slm_recipes.quant.calibration import load_calibration

        cfg = SimpleNamespace(calibration=SimpleNamespace(file=path, format=fmt), samples=samples, seq_len=seq_len)
        import contextlib
        import io

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            w = load_calibration(cfg, self.tok, cap)
        return w, [json.loads(x) for x in out.getvalue().splitlines()]

    def test_chat_rendered_with_the_template_and_concatenated(self):
        w, events = self.windows(ADD_TRAIN, "chat-jsonl", 3, 20)
        self.assertEqual(tuple(w.shape), (3, 20))
        # <s><|user|>52+48<|assistant|>100</s> then <s><|user|>89+40<|assistant|>129</s> (add-train's first
        # lines), with the fixture's ids: BOS 1, <|user|> 3, <|assistant|> 4, EOS 2, digits 281…291, '+' 282.
        self.assertEqual(w[0, :12].tolist(), [1, 3, 286, 283, 282, 285, 289, 4, 281, 291, 291, 2])
        self.assertEqual(w[0, 12:14].tolist(), [1, 3])
        self.assertEqual(events, [])

    def test_seq_len_capped_at_the_context_and_short_data_warned(self):
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
            f.write("12+34=46\n" * 300)  # 9 tokens a line, 2,701 with the BOS
            f.flush()
            w, events = self.windows(f.name, "text", 128, 512)
        self.assertEqual(tuple(w.shape), (10, 256))
        self.assertEqual(w[0, :4].tolist(), [1, 281, 283, 282])  # one BOS at the start of the text: <s>12+
        self.assertEqual(int((w == 1).sum()), 1)
        messages = " | ".join(e["message"] for e in events if e["type"] == "log" and e["level"] == "warn")
        self.assertRegex(messages, "seq_len 512 is longer than the model's context; using 256")
        self.assertRegex(messages, "gives 10 windows of 256 tokens, fewer than the 128 samples")


@needs_torch
class InterruptTest(unittest.TestCase):
    def test_sigint_inside_the_blocks_exits_130_and_leaves_no_folder(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "out")
            cfg_path = os.path.join(d, "cfg.json")
            with open(cfg_path, "w") as f:
                json.dump(config(out, threads=1), f)
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


if __name__ == "__main__":
    unittest.main()
