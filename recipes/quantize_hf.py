#!/usr/bin/env python3
"""Quantizes a Hugging Face causal LM with GPTQ, AWQ or round-to-nearest into a standard GPTQ/AWQ checkpoint
(or, for AWQ, into float weights with AWQ's scales applied), or dequantizes such a checkpoint.

    python recipes/quantize_hf.py --config cfg.json

Events (NDJSON) on stdout, logs on stderr; everything is written into the config's output_dir, which a failure
or an interrupt leaves absent. Config, events and result: docs/quantize-recipes.md."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from slm_recipes.cli import main  # noqa: E402
from slm_recipes.config import quantize_config  # noqa: E402
from slm_recipes.errors import ConfigError  # noqa: E402


def _not_available(what, error):
    return ConfigError(f"{what} is not available in this version of the recipes ({error})")


def run(cfg, steps, interrupt):
    if cfg.task == "dequantize":
        try:
            from slm_recipes.quant.dequantize import run_dequantize
        except ImportError as e:
            raise _not_available("task \"dequantize\"", e) from None
        return run_dequantize(cfg, steps, interrupt)
    from slm_recipes.quant.pipeline import run_quantize

    if cfg.method == "awq":
        try:
            from slm_recipes.quant.awq_method import AwqMethod
        except ImportError as e:
            raise _not_available("method \"awq\"", e) from None
        return run_quantize(cfg, steps, interrupt, AwqMethod(cfg))
    from slm_recipes.quant.gptq_method import GptqMethod

    return run_quantize(cfg, steps, interrupt, GptqMethod(cfg))


if __name__ == "__main__":
    sys.exit(main("Quantize a Hugging Face model (GPTQ, AWQ) or dequantize one", quantize_config, run,
                  ["torch", "transformers", "safetensors"]))
