"""Merging a LoRA adapter into its base model: a full Hugging Face model folder (safetensors) that any
HF-format tool, or slm convert, can use. The base is loaded in its own stored dtype on the CPU (PEFT computes
the bf16/fp16 weight deltas in fp32 there), never from a quantized training copy."""
import os

from .fsutil import atomic_dir
from .tokenizer_files import copy_tokenizer

_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "tokenizer.model")


def merge(base, adapter, out):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base, dtype="auto")
    model = PeftModel.from_pretrained(model, adapter)
    merged = model.merge_and_unload()
    # The adapter folder carries the tokenizer (and chat template) it was trained with, when slm wrote it; the
    # files themselves come from the base (tokenizer_files.py: a re-saved tokenizer converts to another vocabulary).
    template = None
    if any(os.path.isfile(os.path.join(adapter, f)) for f in _TOKENIZER_FILES):
        template = AutoTokenizer.from_pretrained(adapter).chat_template
    with atomic_dir(out) as tmp:
        merged.save_pretrained(tmp)
        copy_tokenizer(base, tmp, template)
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    params = sum(p.numel() for p in merged.parameters())
    return {"merged_dir": out, "bytes": size, "parameters": params}
