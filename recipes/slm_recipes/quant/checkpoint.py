"""The output folder of a quantization: the source's tensors with some replaced (packed GPTQ/AWQ tensors, or AWQ's
scaled float weights), config.json with the quantization_config, and every other file of the source (tokenizer,
generation config, chat template) copied. Weights are read from the source's own files, so the tensors that are
not quantized (embeddings, norms, lm_head) keep their names, dtype and bytes.

`output_folder` owns the folder's life: a failure or an interrupt anywhere inside it leaves no folder behind
(or, if the caller made it empty, an empty one)."""
import json
import os
import shutil
from contextlib import contextmanager

from ..errors import RecipeError

_WEIGHT_ENDINGS = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf")
_NOT_COPIED = {"config.json", "quantize_config.json"}


@contextmanager
def output_folder(path):
    existed = os.path.isdir(path)
    os.makedirs(path, exist_ok=True)
    try:
        yield path
    except BaseException:
        if existed:
            for name in os.listdir(path):
                p = os.path.join(path, name)
                shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) and not os.path.islink(p) else os.remove(p)
        else:
            shutil.rmtree(path, ignore_errors=True)
        raise


def source_tensor_files(src):
    """The files transformers loads the source's weights from: the shards its index names, model.safetensors, or
    pytorch_model*.bin (other weight files in a folder, e.g. Mistral's consolidated.safetensors, are not the
    model's HF weights)."""
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        p = os.path.join(src, index)
        if os.path.isfile(p):
            with open(p, encoding="utf-8") as f:
                shards = sorted(set(json.load(f).get("weight_map", {}).values()))
            return [os.path.join(src, s) for s in shards]
    for single in ("model.safetensors", "pytorch_model.bin"):
        if os.path.isfile(os.path.join(src, single)):
            return [os.path.join(src, single)]
    raise RecipeError(f"{src} holds no model weights (model.safetensors or pytorch_model.bin)")


def read_source_tensors(src, skip=(), names=None):
    """{name: tensor} of every tensor in the source's weight files except those named in `skip`; `names`, a set
    when given, receives every name in the files."""
    import torch

    skip = set(skip)
    out = {}
    for path in source_tensor_files(src):
        if path.endswith(".safetensors"):
            from safetensors import safe_open

            with safe_open(path, framework="pt") as f:
                for name in f.keys():
                    if names is not None:
                        names.add(name)
                    if name not in skip:
                        out[name] = f.get_tensor(name)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if names is not None:
                names.update(state)
            out.update({k: v for k, v in state.items() if k not in skip})
    return out


def read_config(src):
    with open(os.path.join(src, "config.json"), encoding="utf-8") as f:
        return json.load(f)


def write_checkpoint(out, src, replace, drop=(), quantization_config=None, dtype=None, extra_json=None):
    """Writes out/model.safetensors (the source's tensors minus `drop`, with `replace` {name: tensor} replacing or
    adding), out/config.json (the source's, plus quantization_config and dtype when given), every JSON object in
    extra_json {file name: dict}, and the source's other files. Returns the bytes written."""
    from safetensors.torch import save_file

    names = set()
    tensors = read_source_tensors(src, skip=set(drop) | set(replace), names=names)
    absent = sorted(set(drop) - names)
    if absent:
        # The model's module names are not the checkpoint's (a model whose loader renames its weights).
        raise RecipeError(f"the quantized weights {', '.join(absent[:3])} are not in {src}'s weight files under "
                          "those names")
    tensors.update(replace)
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    config = read_config(src)
    if quantization_config is not None:
        config["quantization_config"] = quantization_config
    if dtype is not None:
        config["dtype"] = dtype
        if "torch_dtype" in config:
            config["torch_dtype"] = dtype
    files = {"config.json": config, **(extra_json or {})}
    for name, obj in files.items():
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
    for name in sorted(os.listdir(src)):
        p = os.path.join(src, name)
        if (name in _NOT_COPIED or name in files or name.endswith(_WEIGHT_ENDINGS) or name.endswith(".index.json")
                or not os.path.isfile(p)):
            continue
        shutil.copyfile(p, os.path.join(out, name))
    return folder_size(out)


def folder_size(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
