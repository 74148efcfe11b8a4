"""The export config (docs/export.md, "Recipe protocol"). Pure Python, like slm_recipes.config: it runs without
torch, so a malformed config fails before anything heavy is imported."""
import os
from types import SimpleNamespace

from ..config import _existing_dir, _Reader
from ..errors import ConfigError

# The dtypes this exporter writes (transformers.js's names; src/backends/onnx/layout.ts has the full vocabulary).
DTYPES = ("fp32", "fp16", "q8", "q4")
# transformers.js's file-name suffix per dtype: onnx/model<suffix>.onnx.
SUFFIX = {"fp32": "", "fp16": "_fp16", "q8": "_quantized", "int8": "_int8", "uint8": "_uint8", "q4": "_q4",
          "q4f16": "_q4f16", "bnb4": "_bnb4"}
# The torch.onnx exporter's opset range that onnxruntime 1.30 and onnxruntime-web both run.
OPSET_MIN, OPSET_MAX, OPSET_DEFAULT = 14, 20, 17


def export_config(raw):
    r = _Reader(raw, "export")
    c = SimpleNamespace()
    c.model = _existing_dir(r.string("model"), "model", "config.json")
    c.output_dir = os.path.abspath(r.string("output_dir"))
    dtypes = r.get("dtypes")
    if not isinstance(dtypes, list) or not dtypes or any(d not in DTYPES for d in dtypes):
        raise r.bad("dtypes", "a non-empty list of " + ", ".join(repr(d) for d in DTYPES))
    c.dtypes = [d for d in DTYPES if d in dtypes]  # fp32 first: the others are derived from it
    c.opset = r.integer("opset", OPSET_MIN, default=OPSET_DEFAULT)
    if c.opset > OPSET_MAX:
        raise r.bad("opset", f"an integer from {OPSET_MIN} to {OPSET_MAX}")
    ext = r.get("external_data", "auto")
    if ext not in ("auto", True, False):
        raise r.bad("external_data", '"auto", true or false')
    c.external_data = ext
    c.block_size = r.integer("block_size", 16, default=32)
    if c.block_size & (c.block_size - 1):
        raise r.bad("block_size", "a power of two >= 16")
    c.threads = r.integer("threads", 1, default=None, nullable=True)
    c.verify = r.boolean("verify", default=True)
    r.finish()
    if os.path.exists(c.output_dir):
        if not os.path.isdir(c.output_dir):
            raise ConfigError(f"output_dir: {c.output_dir} exists and is not a folder")
        if os.listdir(c.output_dir) and not os.path.isdir(os.path.join(c.output_dir, "onnx")):
            raise ConfigError(f"output_dir: {c.output_dir} is not empty and holds no onnx/ folder "
                              "(an earlier export's folder, to add dtypes to, or a new one)")
    return c
