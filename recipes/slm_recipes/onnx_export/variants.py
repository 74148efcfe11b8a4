"""The dtypes derived from the fp32 graph with onnxruntime's own tools, with the settings transformers.js's
scripts/quantize.py uses, so a folder from slm matches what onnx-community publishes:

  fp16  onnxruntime.transformers.float16, keep_io_types=True (inputs, outputs and the KV cache stay float32, so
        config.json needs no kv_cache_dtype entry), its default op block list
  q8    dynamic int8 (QInt8 weights, uint8 activations), MatMuls with constant weights only, per tensor
  q4    MatMulNBits, 4-bit, symmetric, blocks of 32 (MatMuls with constant weights; embeddings stay fp32)"""
import logging
import os

import onnx

from ..deps import require

# Protobuf cannot hold a message of 2 GiB or more; below this many bytes of weights one file is fine.
_SINGLE_FILE_LIMIT = 1_800_000_000


def weight_bytes(model):
    total = 0
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            total += next((int(e.value) for e in t.external_data if e.key == "length"), 0)
        else:
            total += len(t.raw_data) or t.ByteSize()
    return total


def save(model, folder, file_name, external):
    """Writes onnx/<file_name> (+ <file_name>_data when external: one file, as transformers.js expects it for
    `use_external_data_format: {"<file_name>": 1}`). Returns (paths written, whether external data was used)."""
    if external == "auto":
        external = weight_bytes(model) >= _SINGLE_FILE_LIMIT
    path = os.path.join(folder, file_name)
    data_name = f"{file_name}_data"
    if external:
        onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location=data_name,
                        size_threshold=1024, convert_attribute=False)
        return [path, os.path.join(folder, data_name)], True
    onnx.save_model(model, path)
    return [path], False


def _quiet():
    """onnxruntime's quantizers log every node at INFO (on the root logger, for quantize_dynamic): keep stderr,
    which slm shows the tail of on failure, for what matters."""
    for name in ("", "onnxruntime", "onnxruntime.quantization", "onnxruntime.quantization.matmul_nbits_quantizer"):
        logging.getLogger(name).setLevel(logging.WARNING)


def to_fp16(model):
    from onnxruntime.transformers.float16 import convert_float_to_float16

    # Shape inference serialises the model: impossible past protobuf's 2 GiB.
    big = weight_bytes(model) >= _SINGLE_FILE_LIMIT
    return convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=big)


def to_q8(model, scratch):
    """quantize_dynamic works on files: the fp32 graph is saved to `scratch` (with external data) first."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    _quiet()
    src = os.path.join(scratch, "q8-input.onnx")
    dst = os.path.join(scratch, "q8-output.onnx")
    big = weight_bytes(model) >= _SINGLE_FILE_LIMIT
    onnx.save_model(model, src, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="q8-input.onnx_data", size_threshold=1024)
    del model  # the quantizer loads its own copy from the file
    quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=False, reduce_range=False,
                     use_external_data_format=big,
                     extra_options={"MatMulConstBOnly": True})
    return onnx.load_model(dst)


def to_q4(model, block_size):
    require(["onnx_ir"], "4-bit ONNX quantization (onnxruntime's MatMulNBitsQuantizer)")
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    _quiet()
    quantizer = MatMulNBitsQuantizer(model, bits=4, block_size=block_size, is_symmetric=True)
    quantizer.process()
    return quantizer.model.model
