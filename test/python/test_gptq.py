"""Quick tests of the GPTQ recipe (recipes/quantize_hf.py, slm_recipes/quant): the config validator and the output
folder's clean-up (no torch), the checkpoint format against words worked out by hand, the grid, GPTQ's lazy blocked
algorithm against a plain column-by-column reference, the sequential block driver, calibration windows. The torch
tests skip where torch/transformers are not installed (npm test on a machine without the ML stack). The tests
that quantize tiny-arith (GPTQ against round-to-nearest, Ctrl+C, llama.cpp's converter as the independent reader)
are in test_gptq_model.py."""
import json
import os
import sys
import tempfile
import unittest
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(__file__))

from quant_fixture import ADD_TRAIN, FIXTURE, MODEL, config  # noqa: E402
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
class SourceTest(unittest.TestCase):
    def test_an_already_quantized_model_is_refused_before_anything_is_written(self):
        from slm_recipes import events as ev
        from slm_recipes.quant.gptq_method import GptqMethod
        from slm_recipes.quant.pipeline import run_quantize

        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "src")
            os.mkdir(src)
            with open(os.path.join(MODEL, "config.json"), encoding="utf-8") as f:
                cfg = json.load(f)
            cfg["quantization_config"] = {"quant_method": "gptq", "bits": 4}
            with open(os.path.join(src, "config.json"), "w", encoding="utf-8") as f:
                json.dump(cfg, f)
            out = os.path.join(d, "out")
            c = quantize_config(config(out, model=src))
            with self.assertRaisesRegex(ConfigError, "is already quantized \\(gptq\\); GPTQ and AWQ start from the "
                                                     "original Hugging Face weights"):
                run_quantize(c, ev.Steps(), None, GptqMethod(c))
            self.assertFalse(os.path.exists(out))


@needs_torch
class GptqShapesTest(unittest.TestCase):
    def test_a_group_size_that_does_not_divide_a_layers_input_is_a_config_error(self):
        from slm_recipes.quant.gptq_method import GptqMethod

        ctx = SimpleNamespace(index=0, linears={"q_proj": torch.nn.Linear(256, 256), "down_proj": torch.nn.Linear(768, 256)},
                              full_name=lambda n: f"model.layers.0.{n}")
        for group in (100, 512):
            cfg = SimpleNamespace(method="gptq", bits=4, group_size=group, desc_act=False)
            with self.assertRaisesRegex(ConfigError, f"group_size {group} does not divide the 256 input columns of model.layers.0.q_proj"):
                GptqMethod(cfg)._check_shapes(ctx)
        for group in (128, 64, -1):
            GptqMethod(SimpleNamespace(method="rtn", bits=4, group_size=group, desc_act=False))._check_shapes(ctx)


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
class BlockDriverTest(unittest.TestCase):
    """run_blocks gives block i exactly the hidden states the model itself would give it, with the blocks before it
    as the callback left them (quantized), for Llama-family models of transformers 5 (rotary embeddings and masks
    made by the model, a fused qkv projection, sliding-window layers), in several chunks."""

    def check(self, model, ids):
        import copy

        from slm_recipes.quant import blocks

        changed = copy.deepcopy(model)
        for layer in blocks.decoder_blocks(changed)[1]:
            layer.self_attn.o_proj.weight.data *= 0.5  # what the callback below does to each block
        with torch.no_grad():
            expected = changed(input_ids=ids, output_hidden_states=True).hidden_states
        seen = []

        def callback(ctx):
            seen.append(torch.cat([h for h, _ in ctx.inputs]))
            ctx.block.self_attn.o_proj.weight.data *= 0.5

        old, blocks._CHUNK_TOKENS = blocks._CHUNK_TOKENS, 2 * ids.shape[1]  # windows in chunks of 2
        try:
            count = blocks.run_blocks(model, ids, torch.device("cpu"), callback)
        finally:
            blocks._CHUNK_TOKENS = old
        self.assertEqual(count, len(seen))
        for i, h in enumerate(seen):
            self.assertTrue(torch.equal(h, expected[i].float()), f"block {i}: {float((h - expected[i]).abs().max())}")

    def test_tiny_arith(self):
        from slm_recipes.quant.blocks import load_model

        ids = torch.randint(3, 320, (5, 40), generator=torch.Generator().manual_seed(0))
        self.check(load_model(MODEL), ids)

    def test_capture_onto_another_device_shares_equal_keywords(self):
        # "meta" stands in for a GPU: chunk 2's keywords (on the CPU) are compared with chunk 1's as captured, not
        # with chunk 1's copies on the device.
        from slm_recipes.quant.blocks import capture_block0_inputs, decoder_blocks, load_model

        model = load_model(MODEL)
        ids = torch.randint(3, 320, (4, 16), generator=torch.Generator().manual_seed(0))
        chunks = capture_block0_inputs(model, decoder_blocks(model)[1], ids, torch.device("meta"), 2)
        self.assertEqual(len(chunks), 2)
        self.assertEqual(chunks[0][0].device.type, "meta")
        self.assertEqual(tuple(chunks[1][0].shape), (2, 16, 256))
        self.assertIs(chunks[0][1]["position_embeddings"], chunks[1][1]["position_embeddings"])

    def test_other_llama_family_models(self):
        from transformers import AutoConfig, AutoModelForCausalLM

        torch.manual_seed(0)
        for model_type, extra in (("qwen2", {}), ("gemma2", {"head_dim": 16}), ("phi3", {})):
            with self.subTest(model_type=model_type):
                cfg = AutoConfig.for_model(model_type, vocab_size=128, hidden_size=64, intermediate_size=128,
                                           num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                                           max_position_embeddings=64, pad_token_id=0, bos_token_id=1,
                                           eos_token_id=2, **extra)
                model = AutoModelForCausalLM.from_config(cfg).eval()
                self.check(model, torch.randint(0, 128, (5, 32)))


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

    def test_data_shorter_than_one_window_is_one_warning_in_the_singular(self):
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
            f.write("12+34=46\n")  # 10 tokens with the BOS
            f.flush()
            w, events = self.windows(f.name, "text", 128, 256)
        self.assertEqual(tuple(w.shape), (1, 10))
        warnings = [e["message"] for e in events if e["type"] == "log" and e["level"] == "warn"]
        self.assertEqual(warnings, ["calibration data has only 10 tokens, fewer than seq_len 256: using one window of 10 tokens instead of 128"])
        from slm_recipes.quant.calibration import windows_text

        self.assertEqual(windows_text(1, 10), "1 window of 10 tokens")
        self.assertEqual(windows_text(16, 256), "16 windows of 256 tokens")


if __name__ == "__main__":
    unittest.main()
