"""The prune task's phases: load, read the calibration windows, measure (block influence or FFN channel
importance), cut, heal (optional), write. Each phase is a step with its own time in the result."""
import copy
import time

import torch

from ..errors import ConfigError
from ..model import pick_device
from ..quant.blocks import decoder_blocks, load_model
from ..quant.calibration import load_calibration, windows_text
from ..quant.checkpoint import output_folder, read_config
from .config import FFN_MULTIPLE
from .scores import lowest, measure, mlp_projections
from .surgery import drop_blocks, pruned_config, slice_ffn, write_folder

# K-quants (Q4_K…) pack 256 weights per super-block along a row: an FFN width that is not a multiple of it gets
# another type for down_proj from llama-quantize.
K_QUANT_BLOCK = 256


def _check_source(src, cfg):
    source = read_config(src)
    q = source.get("quantization_config")
    if isinstance(q, dict) and q:
        raise ConfigError(f"model: {src} is quantized ({q.get('quant_method', 'unknown method')}); pruning starts "
                          "from the unquantized Hugging Face weights")
    n = source.get("num_hidden_layers")
    if cfg.layers is not None and isinstance(n, int) and cfg.layers >= n:
        raise ConfigError(f"layers: the model has {n} decoder blocks; at most {n - 1} can be dropped")
    return source


class _Phases:
    """Step events plus the seconds each phase took (the result's `phases`)."""

    def __init__(self, steps):
        self.steps, self.seconds, self._t = steps, {}, None

    def start(self, key, title, detail=None):
        self._key, self._t = key, time.monotonic()
        self.steps.start(f"prune:{key}", title, detail)

    def done(self, detail=None):
        self.seconds[self._key] = round(time.monotonic() - self._t, 3)
        self.steps.done(detail)


def cut_detail(drop, scores):
    """Which blocks go and why, as the step's detail: "block 3, block influence 0.0032"."""
    which = f"block{'s' if len(drop) > 1 else ''} {', '.join(str(i) for i in drop)}"
    return f"{which}, block influence {', '.join(f'{scores[i]:.4f}' for i in drop)}"


def run_prune(cfg, steps):
    from transformers import AutoTokenizer

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    source = _check_source(cfg.model, cfg)
    ph = _Phases(steps)
    with output_folder(cfg.output_dir):
        ph.start("load", "Loading the model", cfg.model)
        model = load_model(cfg.model)
        stored_dtype = next(model.parameters()).dtype
        model.to(device, torch.float32)
        prefix, blocks = decoder_blocks(model)
        n_blocks = len(blocks)
        parameters = sum(p.numel() for p in model.parameters())
        if cfg.ffn_size is not None and any(mlp_projections(b) is None for b in blocks):
            raise ConfigError("ffn_size: FFN pruning needs Llama-style gated MLPs (mlp.gate_proj, up_proj, "
                              f"down_proj), which {type(model).__name__} does not have")
        architecture = (source.get("architectures") or [type(model).__name__])[0]
        ph.done(f"{architecture}, {n_blocks} blocks, {parameters / 1e6:.1f}M parameters, on {device.type}")

        ph.start("calibration", "Reading calibration data", cfg.calibration.file)
        tokenizer = AutoTokenizer.from_pretrained(cfg.model)
        max_positions = getattr(model.config.get_text_config(), "max_position_embeddings", None) or cfg.seq_len
        windows = load_calibration(cfg, tokenizer, max_positions)
        ph.done(windows_text(windows.shape[0], windows.shape[1]))

        depth = cfg.layers is not None
        ph.start("measure", "Measuring block influence" if depth else "Measuring FFN channel importance")
        m = measure(model, blocks, windows, device, depth, not depth, "prune:measure")
        ph.done()

        teacher = copy.deepcopy(model) if cfg.heal is not None and cfg.heal.mode == "distill" else None
        intermediate = source.get("intermediate_size")
        result = {"layers_before": n_blocks, "intermediate_before": intermediate}
        if depth:
            scores = m["block_influence"]
            drop = lowest(scores, cfg.layers)
            ph.start("cut", f"Dropping {len(drop)} block{'s' if len(drop) > 1 else ''}", cut_detail(drop, scores))
            drop_blocks(model, prefix, drop)
            config = pruned_config(cfg.model, drop=drop)
            result.update(method="layers", removed_layers=drop, block_influence=scores,
                          layers_after=n_blocks - len(drop), intermediate_after=intermediate)
            extra = {}
        else:
            if not isinstance(intermediate, int):
                raise ConfigError("ffn_size: the model's config.json has no single intermediate_size to prune")
            size = cfg.ffn_size
            if size >= intermediate:
                raise ConfigError(f"ffn_size: {size} channels is not fewer than the model's {intermediate}")
            ph.start("cut", f"Keeping {size} of {intermediate} FFN channels per block")
            removed = slice_ffn(blocks, m["channel_importance"], size)
            config = pruned_config(cfg.model, intermediate=size)
            result.update(method="ffn", layers_after=n_blocks, intermediate_after=size,
                          removed_channels=sum(len(r) for r in removed),
                          k_quant_friendly=size % K_QUANT_BLOCK == 0)
            # Which channels went, per block, with every channel's importance: too long for the registry.
            extra = {"prune.json": {"removed_channels": removed, "channel_importance": [
                [round(float(v), 6) for v in c] for c in m["channel_importance"]]}}
            if size % K_QUANT_BLOCK:
                from .. import events as ev

                ev.log("warn", f"the pruned FFN width {size} is a multiple of {FFN_MULTIPLE} but not of "
                               f"{K_QUANT_BLOCK}: llama-quantize's K-quants (Q4_K_M…) fall back to another type "
                               "for the FFN down projection")
        ph.done()

        if cfg.heal is not None:
            from .heal import heal

            title = "Healing: distilling from the unpruned model" if teacher is not None else "Healing: fine-tuning on data"
            ph.start("heal", title, None if teacher is not None else cfg.heal.data.file)
            result["heal"] = heal(model, teacher, windows, cfg, tokenizer, max_positions, device)
            ph.done(f"loss {result['heal']['first_loss']:.3f} → {result['heal']['last_loss']:.3f}")
            del teacher

        ph.start("write", "Writing the pruned model")
        size_bytes = write_folder(model.cpu(), cfg.model, cfg.output_dir, config, stored_dtype, extra)
        ph.done()
    result.update(output_dir=cfg.output_dir, architecture=architecture, model_type=source.get("model_type"),
                  parameters_before=parameters, parameters=sum(p.numel() for p in model.parameters()),
                  calibration_tokens=int(windows.numel()), samples=int(windows.shape[0]),
                  seq_len=int(windows.shape[1]), device=device.type, size=size_bytes, phases=ph.seconds)
    return result
