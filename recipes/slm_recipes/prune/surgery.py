"""The cut itself, on the loaded model, and the pruned folder: the model's weights in the source's dtype, the
source's config.json with the pruned sizes, and every other file of the source (tokenizer, generation config,
chat template) copied as it is, so the folder converts and runs like the original."""
import json
import os
import shutil

import torch

from ..errors import ConfigError
from ..quant.checkpoint import _WEIGHT_ENDINGS, read_config
from .config import FFN_MULTIPLE
from .scores import mlp_projections


def drop_blocks(model, prefix, drop):
    """Removes the blocks `drop` (indices) from the module list at `prefix`; the rest keep their order."""
    parent_name, _, attr = prefix.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, attr)
    setattr(parent, attr, torch.nn.ModuleList([b for i, b in enumerate(old) if i not in set(drop)]))


def per_layer_keys(config, n_layers):
    """config.json keys that hold one entry per decoder block (layer_types, no_rope_layers…): they lose the
    dropped blocks' entries too, or the pruned config would not load."""
    return [k for k, v in config.items() if isinstance(v, list) and len(v) == n_layers and k != "architectures"]


def _keep_rows(linear, idx):
    linear.weight = torch.nn.Parameter(linear.weight.data[idx].clone(), requires_grad=False)
    if linear.bias is not None:
        linear.bias = torch.nn.Parameter(linear.bias.data[idx].clone(), requires_grad=False)
    linear.out_features = len(idx)


def _keep_columns(linear, idx):
    linear.weight = torch.nn.Parameter(linear.weight.data[:, idx].clone(), requires_grad=False)
    linear.in_features = len(idx)


def slice_ffn(blocks, importance, size):
    """Keeps the `size` most important channels of every block's FFN (in their original order). Returns the
    removed channel indices per block."""
    removed = []
    for block, score in zip(blocks, importance):
        gate, up, down = mlp_projections(block)
        keep = torch.sort(torch.topk(score, size).indices).values
        mask = torch.ones(score.numel(), dtype=torch.bool)
        mask[keep] = False
        removed.append(torch.nonzero(mask).flatten().tolist())
        _keep_rows(gate, keep)
        _keep_rows(up, keep)
        _keep_columns(down, keep)
    return removed


def pruned_config(src, drop=None, intermediate=None):
    """The source's config.json with the pruned sizes."""
    config = read_config(src)
    n = config["num_hidden_layers"]
    if drop:
        for key in per_layer_keys(config, n):
            config[key] = [v for i, v in enumerate(config[key]) if i not in set(drop)]
        config["num_hidden_layers"] = n - len(drop)
    if intermediate is not None:
        config["intermediate_size"] = intermediate
    return config


def write_folder(model, src, out, config, dtype, extra):
    """The model's weights (in `dtype`), `config`, `extra` {file name: JSON object} and the source's other
    files into `out`. Returns the bytes written."""
    model.to(dtype)
    model.save_pretrained(out, safe_serialization=True)
    files = {"config.json": config, **extra}
    for name in sorted(os.listdir(src)):
        p = os.path.join(src, name)
        if name in files or name.endswith(_WEIGHT_ENDINGS) or name.endswith(".index.json") or not os.path.isfile(p):
            continue
        # The source's own tokenizer and generation files, not transformers' re-rendering of them.
        shutil.copyfile(p, os.path.join(out, name))
    for name, obj in files.items():
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
