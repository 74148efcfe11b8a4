#!/usr/bin/env python3
"""Exports a Hugging Face causal LM to ONNX in the layout Optimum and transformers.js use: one folder with
config.json, generation_config.json, tokenizer.json (+ tokenizer_config.json, chat template) and
onnx/model<suffix>.onnx per dtype (fp32, fp16, q8, q4), the KV cache as flat inputs and outputs.

    python recipes/export_onnx.py --config cfg.json

Events (NDJSON) on stdout, logs on stderr. An export into an existing export's folder adds its dtypes to it;
a failure or an interrupt leaves the folder as it was. Config, events and result: docs/export.md."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from slm_recipes.cli import main  # noqa: E402
from slm_recipes.onnx_export.config import export_config  # noqa: E402


def run(cfg, steps, interrupt):
    # Nothing to save on Ctrl+C: stop at once, even while torch is imported or the model loads.
    interrupt.at_once()
    from slm_recipes.onnx_export.pipeline import run_export

    return run_export(cfg, steps, interrupt)


if __name__ == "__main__":
    sys.exit(main("Export a Hugging Face causal LM to ONNX (transformers.js layout)", export_config, run,
                  ["torch", "transformers", "onnx", "onnxruntime"]))
