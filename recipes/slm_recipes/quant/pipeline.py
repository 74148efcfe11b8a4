"""The quantize task's steps, shared by every method: load the model (CPU), read the calibration windows, run the
sequential block driver with the method's per-block callback, write the output folder, report.

A method (GptqMethod in gptq_method.py; AWQ's in awq.py) is an object with
  title                      plain words for the step title, e.g. "GPTQ 4-bit, g128"
  quantize_block(ctx)        quantizes one decoder block (ctx: blocks.BlockContext), leaving the block's weights
                             as the quantized values (dequantized, float) so the next block sees them
  block_error()              mean error of the block just quantized, or None (a `metric` event when given)
  write(out, src, model)     writes the output folder (with checkpoint.write_checkpoint); returns its bytes
  summary()                  result keys of its own: quantized_linears, layer_errors, and any overrides"""
import resource
import time

from .. import events as ev
from ..errors import Cancelled, ConfigError
from ..units import format_bytes
from ..model import pick_device
from .blocks import decoder_blocks, load_model, run_blocks
from .calibration import load_calibration, windows_text
from .checkpoint import output_folder, read_config


def _check_source(src):
    cfg = read_config(src)
    q = cfg.get("quantization_config")
    if isinstance(q, dict) and q:
        raise ConfigError(f"model: {src} is already quantized ({q.get('quant_method', 'unknown method')}); "
                          "GPTQ and AWQ start from the original Hugging Face weights")
    return cfg


def _check(interrupt):
    if interrupt is not None and interrupt.requested:
        raise Cancelled("interrupted")


def peak_memory(device):
    import torch

    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def run_quantize(cfg, steps, interrupt, method):
    import torch

    started = time.monotonic()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    source = _check_source(cfg.model)
    with output_folder(cfg.output_dir):
        steps.start("quantize:load", "Loading the model", cfg.model)
        model = load_model(cfg.model)
        _, blocks = decoder_blocks(model)
        parameters = sum(p.numel() for p in model.parameters())
        architecture = (source.get("architectures") or [type(model).__name__])[0]
        _check(interrupt)
        steps.done(f"{architecture}, {len(blocks)} blocks, {parameters / 1e6:.1f}M parameters, on {device.type}")

        windows = None
        if cfg.calibration is not None:
            from transformers import AutoTokenizer

            steps.start("quantize:calibration", "Reading calibration data", cfg.calibration.file)
            tokenizer = AutoTokenizer.from_pretrained(cfg.model)
            text_cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
            windows = load_calibration(cfg, tokenizer, getattr(text_cfg, "max_position_embeddings", None))
            _check(interrupt)
            steps.done(windows_text(windows.shape[0], windows.shape[1]))
        tokens = 0 if windows is None else windows.numel()

        steps.start("quantize:layers", f"Quantizing layers ({method.title})")

        def done(index, total, seconds):
            error = method.block_error()
            if error is not None:
                ev.metric("block_error", error, step=index + 1)
            rate = tokens * (index + 1) / seconds if tokens and seconds > 0 else None
            ev.progress("quantize:layers", "layers", index + 1, total, rate)

        ev.progress("quantize:layers", "layers", 0, len(blocks))
        run_blocks(model, windows, device, method.quantize_block, interrupt, done)
        steps.done()

        steps.start("quantize:write", "Writing the checkpoint", cfg.output_dir)
        size = method.write(cfg.output_dir, cfg.model, model)
        if interrupt is not None and interrupt.requested:
            raise Cancelled("interrupted while writing")
        steps.done(format_bytes(size))

    result = {
        "output_dir": cfg.output_dir, "method": cfg.method, "output": cfg.output, "bits": cfg.bits,
        "group_size": cfg.group_size, "desc_act": cfg.desc_act, "sym": cfg.sym, "damp": cfg.damp,
        "zero_point": None, "architecture": architecture, "model_type": source.get("model_type"),
        "layers": len(blocks), "quantized_linears": 0, "parameters": parameters, "calibration_tokens": tokens,
        "samples": 0 if windows is None else int(windows.shape[0]),
        "seq_len": 0 if windows is None else int(windows.shape[1]), "device": device.type,
        "seconds": round(time.monotonic() - started, 3), "peak_memory_bytes": peak_memory(device), "size": size,
        "layer_errors": [],
    }
    result.update(method.summary())
    return result
