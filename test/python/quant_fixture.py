"""Quantizing tiny-arith in-process for the GPTQ tests: the recipe's own pipeline (what quantize_hf.py runs) with
its events swallowed, into a temporary folder."""
import contextlib
import io
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "recipes"))

FIXTURE = os.path.join(ROOT, "test", "fixtures", "tiny-arith")
MODEL = os.path.join(FIXTURE, "hf")
ADD_TRAIN = os.path.join(FIXTURE, "data", "add-train.jsonl")
# Calibration: the first CALIBRATION windows of add-train rendered as chat; the next HELD_OUT windows are never
# seen by the quantizer and measure it.
SEQ_LEN = 128
CALIBRATION = 8
HELD_OUT = 8


def config(output_dir, **over):
    raw = {"model": MODEL, "output_dir": output_dir, "method": "gptq", "bits": 4, "group_size": 128,
           "calibration": {"file": ADD_TRAIN, "format": "chat-jsonl"}, "samples": CALIBRATION,
           "seq_len": SEQ_LEN, "device": "cpu"}
    raw.update(over)
    return raw


def quantize(output_dir, **over):
    """Runs the quantize task; returns its result."""
    from slm_recipes import events as ev
    from slm_recipes.config import quantize_config
    from slm_recipes.quant.gptq_method import GptqMethod
    from slm_recipes.quant.pipeline import run_quantize

    cfg = quantize_config(config(output_dir, **over))
    with contextlib.redirect_stdout(io.StringIO()):
        return run_quantize(cfg, ev.Steps(), None, GptqMethod(cfg))


def dequantized_linears(folder):
    """{module name: float32 weight [out, in]} from a GPTQ checkpoint, through the recipe's dequantization."""
    import json

    from safetensors.torch import load_file
    from slm_recipes.quant import pack_gptq

    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        qc = json.load(f)["quantization_config"]
    tensors = load_file(os.path.join(folder, "model.safetensors"))
    names = [k[: -len(".qweight")] for k in tensors if k.endswith(".qweight")]
    return {n: pack_gptq.dequantize({k: tensors[f"{n}.{k}"] for k in ("qweight", "qzeros", "scales", "g_idx")},
                                    qc["bits"], qc.get("checkpoint_format", "gptq"))
            for n in names}
