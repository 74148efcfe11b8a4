"""Small ONNX graphs written with the onnx package (not by slm), for test/unit/onnxFolder.test.ts: a decoder-shaped
graph with an input slm cannot feed, a graph without a KV cache, and a decoder-shaped graph with learned positions
(a table of 8: like GPT-2's position embeddings, it cannot evaluate a position past its training length).

    python onnxGraphs.py <out dir>   → <out dir>/extra-input.onnx, no-cache.onnx, learned-positions.onnx
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

out = sys.argv[1]
F, I = TensorProto.FLOAT, TensorProto.INT64


def save(name, inputs, outputs, nodes, initializers=()):
    graph = helper.make_graph(nodes, name, inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(out, name + ".onnx"))


kv = lambda n: helper.make_tensor_value_info(n, F, ["batch_size", 1, "past_sequence_length", 2])
ids = helper.make_tensor_value_info("input_ids", I, ["batch_size", "sequence_length"])
mask = helper.make_tensor_value_info("attention_mask", I, ["batch_size", "total_sequence_length"])
save(
    "extra-input",
    [ids, mask, kv("past_key_values.0.key"), kv("past_key_values.0.value"), helper.make_tensor_value_info("pixel_values", F, [1, 3])],
    [helper.make_tensor_value_info("logits", F, [1, 3]), kv("present.0.key"), kv("present.0.value")],
    [helper.make_node("Identity", ["pixel_values"], ["logits"]), helper.make_node("Identity", ["past_key_values.0.key"], ["present.0.key"]),
     helper.make_node("Identity", ["past_key_values.0.value"], ["present.0.value"])],
)
save(
    "no-cache",
    [helper.make_tensor_value_info("input_ids", F, [1, 3]), mask],
    [helper.make_tensor_value_info("logits", F, [1, 3])],
    [helper.make_node("Identity", ["input_ids"], ["logits"])],
)
save(
    "learned-positions",
    [ids, mask, helper.make_tensor_value_info("position_ids", I, ["batch_size", "sequence_length"]), kv("past_key_values.0.key"), kv("past_key_values.0.value")],
    [helper.make_tensor_value_info("logits", F, ["batch_size", "sequence_length", 3]), kv("present.0.key"), kv("present.0.value")],
    [helper.make_node("Gather", ["positions", "position_ids"], ["logits"], axis=0), helper.make_node("Identity", ["past_key_values.0.key"], ["present.0.key"]),
     helper.make_node("Identity", ["past_key_values.0.value"], ["present.0.value"])],
    [numpy_helper.from_array(np.arange(24, dtype=np.float32).reshape(8, 3), "positions")],
)
