#!/usr/bin/env python3
"""LoRA / QLoRA fine-tuning of a Hugging Face causal LM with PEFT.

    python recipes/finetune_lora.py --config cfg.json

Events (NDJSON) on stdout, logs on stderr; outputs under the config's output_dir (adapter/, checkpoints/,
merged/). The config keys and events are described in docs/finetune-recipes.md."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from slm_recipes.cli import main  # noqa: E402
from slm_recipes.config import finetune_config  # noqa: E402


def run(cfg, steps, interrupt):
    from slm_recipes.trainer import run as train

    return train(cfg, steps, interrupt)


if __name__ == "__main__":
    sys.exit(main("LoRA fine-tuning", finetune_config, run, ["torch", "transformers", "peft", "safetensors"]))
