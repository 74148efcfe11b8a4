"""The prune config (docs/prune.md, "Recipe protocol"). Pure Python, like slm_recipes.config: a malformed config
fails before torch is imported."""
import os
from types import SimpleNamespace

from ..config import _existing_dir, _existing_file, _Reader
from ..errors import ConfigError

# The FFN's intermediate size is kept a multiple of this: llama.cpp's smallest quantization block is 32 weights.
FFN_MULTIPLE = 32


def _data(r, key, required):
    v = r.get(key, None)
    if v is None:
        if required:
            raise ConfigError(f"prune config: {key!r} is required (an object {{\"file\": ..., \"format\": "
                              "\"text\" | \"chat-jsonl\"}})")
        return None
    c = _Reader(v, f"prune {key}")
    out = SimpleNamespace(file=_existing_file(c.string("file"), f"{key}.file"),
                          format=c.choice("format", ("text", "chat-jsonl")))
    c.finish()
    return out


def _heal(r):
    v = r.get("heal", None)
    if v is None:
        return None
    h = _Reader(v, "prune heal")
    out = SimpleNamespace(mode=h.choice("mode", ("data", "distill")))
    out.data = _data(h, "data", out.mode == "data")
    if out.mode == "distill" and out.data is not None:
        raise ConfigError("prune heal: 'data' is for mode \"data\"; distillation uses the calibration windows")
    out.steps = h.integer("steps", 1, default=100)
    out.lr = h.number("lr", 0, low_open=True, default=1e-4)
    out.batch_size = h.integer("batch_size", 1, default=8)
    h.finish()
    return out


def prune_config(raw):
    r = _Reader(raw, "prune")
    c = SimpleNamespace()
    c.model = _existing_dir(r.string("model"), "model", "config.json")
    c.output_dir = os.path.abspath(r.string("output_dir"))
    c.layers = r.integer("layers", 1, default=None, nullable=True)
    c.ffn_size = r.integer("ffn_size", FFN_MULTIPLE, default=None, nullable=True)
    c.calibration = _data(r, "calibration", True)
    c.samples = r.integer("samples", 1, default=32)
    c.seq_len = r.integer("seq_len", 2, default=256)
    c.heal = _heal(r)
    c.device = r.choice("device", ("auto", "cpu", "cuda"), default="auto")
    c.threads = r.integer("threads", 1, default=None, nullable=True)
    c.seed = r.integer("seed", 0, default=0)
    r.finish()
    if (c.layers is None) == (c.ffn_size is None):
        raise ConfigError("prune config: give exactly one of 'layers' (blocks to drop) and 'ffn_size' "
                          "(FFN channels to keep per block)")
    if c.ffn_size is not None and c.ffn_size % FFN_MULTIPLE:
        raise r.bad("ffn_size", f"a multiple of {FFN_MULTIPLE}")
    if os.path.exists(c.output_dir) and (not os.path.isdir(c.output_dir) or os.listdir(c.output_dir)):
        raise ConfigError(f"output_dir: {c.output_dir} already exists and is not an empty folder")
    return c
