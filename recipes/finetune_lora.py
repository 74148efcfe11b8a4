#!/usr/bin/env python3
"""LoRA / QLoRA fine-tuning of a Hugging Face causal LM with PEFT.

    python recipes/finetune_lora.py --config cfg.json

Events (NDJSON) on stdout, logs on stderr; outputs under the config's output_dir (adapter/, checkpoints/,
merged/, result.json). The config keys and events are described in docs/finetune-recipes.md. Under torchrun
(several processes, across machines) it runs unchanged: see slm_recipes/distributed.py.

    torchrun --nproc-per-node 8 recipes/finetune_lora.py --config cfg.json [--resume]"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from slm_recipes.cli import main  # noqa: E402
from slm_recipes.config import finetune_config  # noqa: E402


RESULT_FILE = "result.json"


def run(cfg, steps, interrupt):
    from slm_recipes.fsutil import write_json_atomic
    from slm_recipes.trainer import run as train

    data = train(cfg, steps, interrupt)
    if data is not None:
        # Rank 0's result, also on disk: a run started by torchrun has no slm reading its events, and
        # `slm finetune --register RUN_DIR` registers it from this file.
        write_json_atomic(os.path.join(cfg.output_dir, RESULT_FILE), data)
    return data


if __name__ == "__main__":
    sys.exit(main("LoRA fine-tuning", finetune_config, run, ["torch", "transformers", "peft", "safetensors"]))
