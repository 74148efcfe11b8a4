#!/usr/bin/env python3
"""Prunes a Hugging Face causal LM: drops the decoder blocks that change the hidden state least (depth, ShortGPT's
block influence), or the FFN channels with the smallest activations (width, Minitron), on calibration tokens;
optionally heals the result with a short full fine-tune on data or a KL distillation from the unpruned model.

    python recipes/prune.py --config cfg.json

Events (NDJSON) on stdout, logs on stderr; the pruned model is written into the config's output_dir, which a
failure or an interrupt leaves absent. Config, events and result: docs/prune.md."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from slm_recipes.cli import main  # noqa: E402
from slm_recipes.prune.config import prune_config  # noqa: E402


def run(cfg, steps, interrupt):
    # Nothing is worth keeping from a half-done prune: the first Ctrl+C stops at once, wherever the recipe is.
    interrupt.at_once()
    from slm_recipes.prune.pipeline import run_prune

    return run_prune(cfg, steps)


if __name__ == "__main__":
    sys.exit(main("Prune a Hugging Face causal LM (decoder blocks or FFN channels)", prune_config, run,
                  ["torch", "transformers", "safetensors"]))
