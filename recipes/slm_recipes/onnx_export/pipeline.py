"""The export's steps: load the model (fp32, CPU), trace the fp32 graph, derive each dtype asked for, check each
file with onnxruntime, write the tokenizer and configs, then put everything in place at once.

Everything is built in a staging folder beside output_dir; a failure or an interrupt removes it and leaves
output_dir as it was (absent, or an earlier export with its dtypes untouched)."""
import os
import shutil
import tempfile
import time

from .. import events as ev
from ..errors import Cancelled, ConfigError
from ..units import format_bytes
from . import folder, variants
from .config import SUFFIX


def _check(interrupt):
    if interrupt is not None and interrupt.requested:
        raise Cancelled("interrupted")


def load_source(path):
    """The model in float32 with eager attention (its mask arithmetic traces into plain ONNX ops)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"model: cannot read {path}/config.json: {e}") from None
    if getattr(config, "is_encoder_decoder", False):
        raise ConfigError(f"model: {config.model_type} is an encoder-decoder model; slm exports decoder-only "
                          "causal language models")
    q = getattr(config, "quantization_config", None)
    if q:
        method = q.get("quant_method", "unknown method") if isinstance(q, dict) else type(q).__name__
        raise ConfigError(f"model: {path} holds quantized weights ({method}); export the original Hugging Face "
                          "weights (q8 and q4 are made from them)")
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    except ValueError as e:
        raise ConfigError(f"model: {config.model_type} is not a causal language model transformers can load "
                          f"({str(e).splitlines()[0]})") from None
    except OSError as e:
        raise ConfigError(f"model: cannot load the weights in {path}: {e}") from None
    model.eval()
    model.config.use_cache = True
    return model


def present_dtypes(out_dir):
    onnx_dir = os.path.join(out_dir, "onnx")
    names = set(os.listdir(onnx_dir)) if os.path.isdir(onnx_dir) else set()
    return [d for d, s in SUFFIX.items() if f"model{s}.onnx" in names]


def _install(stage, out, new_onnx):
    """Moves the staged export into `out`: a rename when `out` is new; else the metadata files, then each new
    variant's external data before its graph (a reader never sees a graph whose data is missing)."""
    if not os.path.exists(out) or not os.listdir(out):
        if os.path.exists(out):
            os.rmdir(out)
        os.rename(stage, out)
        return
    os.makedirs(os.path.join(out, "onnx"), exist_ok=True)
    for name in os.listdir(stage):
        if name != "onnx":
            os.replace(os.path.join(stage, name), os.path.join(out, name))
    for paths in new_onnx:
        for path in reversed(paths):
            rel = os.path.relpath(path, stage)
            os.replace(path, os.path.join(out, rel))
    shutil.rmtree(stage, ignore_errors=True)


def run_export(cfg, steps, interrupt):
    import onnx
    import torch

    from .graph import CacheShape, export_graph
    from .verify import check_file

    started = time.monotonic()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    parent = os.path.dirname(cfg.output_dir)
    os.makedirs(parent, exist_ok=True)
    # Named like slm's own work folders (.tmp-<pid>-…), which slm removes once that process is gone.
    stage = os.path.join(parent, f".tmp-{os.getpid()}-{os.path.basename(cfg.output_dir)}")
    shutil.rmtree(stage, ignore_errors=True)
    os.makedirs(os.path.join(stage, "onnx"))
    scratch = tempfile.mkdtemp(prefix=f".tmp-{os.getpid()}-export-", dir=parent)
    try:
        steps.start("export:load", "Loading the model", cfg.model)
        model = load_source(cfg.model)
        shape = CacheShape(model.config)
        parameters = sum(p.numel() for p in model.parameters())
        architecture = (model.config.architectures or [type(model).__name__])[0]
        _check(interrupt)
        steps.done(f"{architecture}, {shape.layers} layers, {parameters / 1e6:.1f}M parameters")

        steps.start("export:graph", f"Exporting the graph (opset {cfg.opset})")
        traced = os.path.join(scratch, "trace", "model.onnx")
        os.makedirs(os.path.dirname(traced))
        export_graph(model, shape, traced, cfg.opset)
        # One graph in memory at a time (each dtype loads the traced file afresh): a 1B model's fp32 graph is 4 GB.
        fp32 = onnx.load_model(traced)
        summary = f"{len(fp32.graph.node)} nodes, {format_bytes(variants.weight_bytes(fp32))} of weights"
        del fp32
        _check(interrupt)
        diffs = {}
        if cfg.verify:
            diffs["fp32"] = check_file(traced, "fp32", model, shape, cfg.threads)
            ev.metric("logit_diff_fp32", diffs["fp32"])
        steps.done(summary)

        files, new_onnx, external = [], [], []
        for dtype in cfg.dtypes:
            steps.start(f"export:{dtype}", f"Writing {dtype}" if dtype == "fp32" else f"Converting to {dtype}")
            if dtype == "fp32":
                graph = onnx.load_model(traced)
            elif dtype == "fp16":
                graph = variants.to_fp16(onnx.load_model(traced))
            elif dtype == "q8":
                graph = variants.to_q8(onnx.load_model(traced), scratch)
            else:
                graph = variants.to_q4(onnx.load_model(traced), cfg.block_size)
            _check(interrupt)
            name = f"model{SUFFIX[dtype]}.onnx"
            paths, is_external = variants.save(graph, os.path.join(stage, "onnx"), name, cfg.external_data)
            del graph
            if cfg.verify and dtype != "fp32":
                diffs[dtype] = check_file(paths[0], dtype, model, shape, cfg.threads)
                ev.metric(f"logit_diff_{dtype}", diffs[dtype])
            size = sum(os.path.getsize(p) for p in paths)
            files.append({"dtype": dtype, "file": f"onnx/{name}", "bytes": size,
                          "external_data": f"onnx/{name}_data" if is_external else None})
            new_onnx.append(paths)
            if is_external:
                external.append(name)
            _check(interrupt)
            steps.done(format_bytes(size))

        steps.start("export:files", "Writing the tokenizer and configs")
        tok = folder.write_tokenizer(cfg.model, stage)
        rewritten = {f"model{SUFFIX[d]}.onnx" for d in cfg.dtypes}
        kept = [n for n in folder.earlier_external_files(cfg.output_dir) if n not in rewritten]
        folder.write_configs(model, cfg.model, stage, kept + external)
        _check(interrupt)
        steps.done("tokenizer.json" + (", chat template" if tok["chat_template"] else ", no chat template"))

        _install(stage, cfg.output_dir, new_onnx)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    return {
        "output_dir": cfg.output_dir, "dtypes": cfg.dtypes, "present": present_dtypes(cfg.output_dir),
        "files": files, "opset": cfg.opset, "architecture": architecture,
        "model_type": getattr(model.config, "model_type", None), "layers": shape.layers,
        "kv_heads": shape.kv_heads, "head_dim": shape.head_dim, "parameters": parameters,
        "chat_template": tok["chat_template"], "logit_diff": diffs,
        "seconds": round(time.monotonic() - started, 3),
    }
