"""task "dequantize": a GPTQ (2/4/8-bit, checkpoint_format gptq or gptq_v2, with or without g_idx) or AWQ GEMM
folder → an unquantized Hugging Face folder in the config's dtype, which llama.cpp's converter (and anything else)
reads as plain weights. AWQ needs this on the way back to GGUF: convert_hf_to_gguf.py refuses AWQ checkpoints.

Every `<name>.qweight` (with its qzeros, scales, and GPTQ's g_idx) becomes `<name>.weight` = scale · (q − zero)
computed in float32, then cast to dtype; every other floating tensor is cast to dtype, integer tensors stay as they
are. Weights are written in shards of at most _SHARD_BYTES (an index when there are several), so memory holds one
output shard, not the whole model; config.json loses quantization_config and gets the dtype; quantize_config.json
is left behind; every other file (tokenizer, generation config) is copied."""
import json
import os
import shutil
import time

from .. import events as ev
from ..errors import Cancelled, ConfigError
from ..units import format_bytes
from . import pack_awq, pack_gptq
from .checkpoint import folder_size, output_folder, read_config, source_tensor_files

_SHARD_BYTES = 2 << 30
_WEIGHT_ENDINGS = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf")
_NOT_COPIED = {"config.json", "quantize_config.json", "quant_config.json"}
_PACKED = ("qweight", "qzeros", "scales", "g_idx")


def source_quantization(src):
    """(method, bits, group_size, checkpoint_format) of a GPTQ/AWQ folder; ConfigError for anything else."""
    qc = read_config(src).get("quantization_config")
    # Older folders keep the description beside config.json: quantize_config.json (GPTQ, AutoGPTQ) or
    # quant_config.json (AWQ, AutoAWQ: w_bit, q_group_size, version "GEMM").
    for legacy, method in (("quantize_config.json", "gptq"), ("quant_config.json", "awq")):
        if (not isinstance(qc, dict) or not qc) and os.path.isfile(os.path.join(src, legacy)):
            with open(os.path.join(src, legacy), encoding="utf-8") as f:
                qc = {"quant_method": method, **json.load(f)}
    if not isinstance(qc, dict) or not qc:
        raise ConfigError(f"model: {src} is not a quantized checkpoint (its config.json has no quantization_config)")
    method = str(qc.get("quant_method", "")).lower()
    bits = qc.get("bits", qc.get("w_bit"))
    group_size = qc.get("group_size", qc.get("q_group_size"))
    if method == "gptq":
        fmt = str(qc.get("checkpoint_format") or qc.get("format") or "gptq").lower()
        if fmt not in ("gptq", "gptq_v2"):
            raise ConfigError(f"model: GPTQ checkpoint_format {fmt!r} is not supported; gptq and gptq_v2 are")
        if bits not in (2, 4, 8):
            raise ConfigError(f"model: {bits}-bit GPTQ is not supported; 2, 4 and 8 bits are")
        return method, bits, group_size, fmt
    if method == "awq":
        version = str(qc.get("version", "gemm")).lower()
        if version != "gemm":
            raise ConfigError(f"model: AWQ version {version!r} is not supported; the GEMM format is")
        if bits != 4:
            raise ConfigError(f"model: {bits}-bit AWQ is not supported; the GEMM format is 4-bit")
        return method, bits, group_size, "gemm"
    raise ConfigError(f"model: quantization method {method or 'unknown'!r} cannot be dequantized here; "
                      "GPTQ and AWQ (GEMM) can")


class _Tensors:
    """Every tensor of the folder's weight files by name, read on demand (a packed linear's parts may sit in
    different shards)."""

    def __init__(self, src):
        from safetensors import safe_open

        self.files, self.where = [], {}
        for path in source_tensor_files(src):
            if not path.endswith(".safetensors"):
                raise ConfigError(f"model: {os.path.basename(path)}: only safetensors checkpoints can be dequantized")
            f = safe_open(path, framework="pt")
            self.files.append(f)
            for name in f.keys():
                self.where[name] = f

    def names(self):
        return list(self.where)

    def get(self, name):
        return self.where[name].get_tensor(name)


def _dequantize_linear(tensors, prefix, method, bits, group_size, fmt):
    import torch

    parts = {k: tensors.get(f"{prefix}.{k}") for k in _PACKED if f"{prefix}.{k}" in tensors.where}
    for k in ("qweight", "qzeros", "scales"):
        if k not in parts:
            raise ConfigError(f"model: {prefix}.{k} is missing from the checkpoint")
    if method == "awq":
        return pack_awq.dequantize(parts["qweight"], parts["qzeros"], parts["scales"])
    if "g_idx" not in parts:  # older GPTQ checkpoints without act-order: input i is in group i // group_size
        inputs = parts["qweight"].shape[0] * (32 // bits)
        size = inputs if group_size in (None, -1) else group_size
        parts["g_idx"] = torch.arange(inputs, dtype=torch.int32) // size
    return pack_gptq.dequantize(parts, bits, fmt)


def run_dequantize(cfg, steps, interrupt):
    import torch
    from safetensors.torch import save_file

    started = time.monotonic()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    method, bits, group_size, fmt = source_quantization(cfg.model)
    dtype = getattr(torch, cfg.dtype)
    with output_folder(cfg.output_dir) as out:
        steps.start("dequantize:run", f"Dequantizing {method.upper()} {bits}-bit weights to {cfg.dtype}", cfg.model)
        tensors = _Tensors(cfg.model)
        names = tensors.names()
        packed = sorted({n[: -len(".qweight")] for n in names if n.endswith(".qweight")})
        if not packed:
            raise ConfigError(f"model: {cfg.model} says it is {method.upper()} but holds no .qweight tensors")
        parts = {f"{p}.{k}" for p in packed for k in _PACKED}
        plain = [n for n in names if n not in parts]
        jobs = [(f"{p}.weight", p) for p in packed] + [(n, None) for n in plain]
        shards, shard, shard_bytes, weight_map = [], {}, 0, {}

        def flush():
            nonlocal shard, shard_bytes
            if shard:
                path = os.path.join(out, f"shard-{len(shards):05d}.tmp")
                save_file(shard, path, metadata={"format": "pt"})
                shards.append((path, list(shard)))
            shard, shard_bytes = {}, 0

        for i, (name, prefix) in enumerate(jobs):
            if interrupt is not None and interrupt.requested:
                raise Cancelled("interrupted while dequantizing")
            if prefix is not None:
                t = _dequantize_linear(tensors, prefix, method, bits, group_size, fmt).to(dtype)
            else:
                t = tensors.get(name)
                if t.is_floating_point():
                    t = t.to(dtype)
            shard[name] = t.contiguous()
            shard_bytes += t.numel() * t.element_size()
            if shard_bytes >= _SHARD_BYTES:
                flush()
            ev.progress("dequantize:run", "tensors", i + 1, len(jobs))
        flush()
        _name_shards(out, shards, weight_map)
        _write_config(cfg.model, out, cfg.dtype)
        _copy_side_files(cfg.model, out)
        size = folder_size(out)
        steps.done(f"{len(jobs)} tensors, {format_bytes(size)}")
    return {"output_dir": cfg.output_dir, "method": method, "bits": bits, "dtype": cfg.dtype, "tensors": len(jobs),
            "size": size, "seconds": round(time.monotonic() - started, 3)}


def _follow_umask(path):
    """safetensors creates its files readable by their owner only; the folder's other files follow the umask."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def _name_shards(out, shards, weight_map):
    for path, _ in shards:
        _follow_umask(path)
    if len(shards) == 1:
        os.rename(shards[0][0], os.path.join(out, "model.safetensors"))
        return
    total = 0
    for k, (path, names) in enumerate(shards, 1):
        final = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        os.rename(path, os.path.join(out, final))
        total += os.path.getsize(os.path.join(out, final))
        weight_map.update({n: final for n in names})
    with open(os.path.join(out, "model.safetensors.index.json"), "w", encoding="utf-8") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
        f.write("\n")


def _write_config(src, out, dtype):
    config = read_config(src)
    config.pop("quantization_config", None)
    config["dtype"] = dtype
    if "torch_dtype" in config:
        config["torch_dtype"] = dtype
    with open(os.path.join(out, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
        f.write("\n")


def _copy_side_files(src, out):
    for name in sorted(os.listdir(src)):
        p = os.path.join(src, name)
        if (name in _NOT_COPIED or name.endswith(_WEIGHT_ENDINGS) or name.endswith(".index.json")
                or not os.path.isfile(p)):
            continue
        shutil.copyfile(p, os.path.join(out, name))
