"""The independent reader: llama.cpp's own convert_hf_to_gguf.py (the converter slm's way back to GGUF uses)
reads the recipe's GPTQ checkpoints of tiny-arith and, with --outtype f32, writes exactly the weights the recipe's
dequantization gives — tensor for tensor, max difference 0 — for 4-bit g128 with and without act-order, 2-bit
asymmetric and 8-bit per channel. Untouched tensors come through as the source's.

Needs LLAMA_CPP_DIR, a llama.cpp checkout's Python side (convert_hf_to_gguf.py, gguf-py/):
test/unit/gptqReader.test.ts sets it to the copy slm checks out from node-llama-cpp's bundle."""
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))

from quant_fixture import MODEL, dequantized_linears, quantize  # noqa: E402

LLAMA_CPP = os.environ.get("LLAMA_CPP_DIR")
try:
    import torch
    import numpy
    import transformers  # noqa: F401
except ImportError:
    torch = None

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


@unittest.skipIf(torch is None, "torch, numpy and transformers are not installed")
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
