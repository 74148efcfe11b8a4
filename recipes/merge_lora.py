#!/usr/bin/env python3
"""Merges a PEFT LoRA adapter into its base model and writes a Hugging Face folder (safetensors).

    python recipes/merge_lora.py --config cfg.json     # {"base": dir, "adapter": dir, "out": dir}"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from slm_recipes.cli import main  # noqa: E402
from slm_recipes.config import merge_config  # noqa: E402
from slm_recipes.units import format_bytes  # noqa: E402


def run(cfg, steps, interrupt):
    from slm_recipes.merge import merge

    steps.start("merge", "Merge adapter into the base model", cfg.out)
    info = merge(cfg.base, cfg.adapter, cfg.out)
    steps.done(format_bytes(info["bytes"]))
    return info


if __name__ == "__main__":
    sys.exit(main("Merge a LoRA adapter", merge_config, run, ["torch", "transformers", "peft", "safetensors"]))
