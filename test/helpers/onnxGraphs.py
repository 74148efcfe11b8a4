"""Small ONNX graphs written with the onnx package (not by slm), for test/unit/onnxFolder.test.ts: a decoder-shaped
graph with an input slm cannot feed, and a graph without a KV cache.

    python onnxGraphs.py <out dir>   → <out dir>/extra-input.onnx, <out dir>/no-cache.onnx
"""
import os
import sys

import onnx
from onnx import TensorProto, helper

out = sys.argv[1]
F, I = TensorProto.FLOAT, TensorProto.INT64


def save(name, inputs, outputs, nodes):
    graph = helper.make_graph(nodes, name, inputs, outputs)
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
