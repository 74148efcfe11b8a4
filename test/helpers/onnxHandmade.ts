import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { execa } from "execa";
import { FIXTURE } from "./cli.js";

/**
 * A small ONNX model folder in the transformers.js layout, its graphs written by the Python onnx
 * package's own helpers (not by slm): the decoder's input/output names and axes (one layer of KV cache),
 * opset 17 plus com.microsoft 1, one 256×320 initializer. The graph computes nothing meaningful: it is
 * for what reads headers and moves files (pull, info, list), not for running. `external`: also write
 * that dtype's weights as external data (`model.onnx_data`), as exports over 2 GB do.
 */
export async function handmadeOnnxFolder(python: string, dir: string, dtypes: Record<string, string>, external: string[] = []): Promise<string> {
  mkdirSync(path.join(dir, "onnx"), { recursive: true });
  for (const f of ["config.json", "generation_config.json", "tokenizer_config.json"]) copyFileSync(path.join(FIXTURE, "hf", f), path.join(dir, f));
  writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify({ version: "1.0", model: { type: "Unigram", vocab: [] } }));
  writeFileSync(path.join(dir, "README.md"), "# handmade\n");
  const script = `
import json, sys, numpy as np, onnx
from onnx import TensorProto, helper, numpy_helper
out, files, external = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
def graph():
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch_size", "total_sequence_length"]),
              helper.make_tensor_value_info("past_key_values.0.key", TensorProto.FLOAT, ["batch_size", 4, "past_sequence_length", 32])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch_size", "sequence_length", 320]),
               helper.make_tensor_value_info("present.0.key", TensorProto.FLOAT, ["batch_size", 4, "total_sequence_length", 32])]
    w = numpy_helper.from_array(np.arange(256 * 320, dtype=np.float32).reshape(256, 320), "lm_head.weight")
    nodes = [helper.make_node("Identity", ["past_key_values.0.key"], ["present.0.key"]),
             helper.make_node("Cast", ["input_ids"], ["ids_f"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["ids_f", "axes"], ["ids_3d"]),
             helper.make_node("MatMul", ["ids_3d", "row"], ["h"]),
             helper.make_node("MatMul", ["h", "lm_head.weight"], ["logits"])]
    axes = numpy_helper.from_array(np.array([2], dtype=np.int64), "axes")
    row = numpy_helper.from_array(np.ones((1, 256), dtype=np.float32), "row")
    g = helper.make_graph(nodes, "handmade", inputs, outputs, [w, axes, row])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)], producer_name="handmade", producer_version="1")
for dtype, name in files.items():
    m = graph()
    onnx.checker.check_model(m)
    if dtype in external:
        onnx.save_model(m, f"{out}/onnx/{name}", save_as_external_data=True, all_tensors_to_one_file=True, location=f"{name}_data", size_threshold=1024)
    else:
        onnx.save_model(m, f"{out}/onnx/{name}")
`;
  await execa(python, ["-c", script, dir, JSON.stringify(dtypes), JSON.stringify(external)]);
  return dir;
}
