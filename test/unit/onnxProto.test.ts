import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa } from "execa";
import { beforeAll, describe, expect, it } from "vitest";
import { readOnnxHeader } from "../../src/backends/onnx/proto.js";
import { handmadeOnnxFolder } from "../helpers/onnxHandmade.js";
import { onnxPythonForTests } from "../helpers/python.js";

const py = await onnxPythonForTests();

/** What the onnx package itself reads from the file's graph (weights not loaded). */
async function pythonView(file: string) {
  const script = `
import json, sys, onnx
m = onnx.load(sys.argv[1], load_external_data=False)
def vi(v):
    t = v.type.tensor_type
    return {"name": v.name, "type": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, "shape": [d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim]}
ext = sorted({e.value for i in m.graph.initializer for e in i.external_data if e.key == "location"})
print(json.dumps({"irVersion": m.ir_version, "opsets": [{"domain": o.domain, "version": o.version} for o in m.opset_import], "inputs": [vi(v) for v in m.graph.input], "outputs": [vi(v) for v in m.graph.output], "nodes": len(m.graph.node), "initializers": len(m.graph.initializer), "externalData": ext}))
`;
  return JSON.parse((await execa(py.python!, ["-c", script, file])).stdout);
}

describe.skipIf(!!py.skip)(`readOnnxHeader${py.skip ? ` (skipped: ${py.skip})` : ""}`, () => {
  let dir: string;
  beforeAll(async () => {
    dir = await handmadeOnnxFolder(py.python!, mkdtempSync(path.join(tmpdir(), "slm-onnx-proto-")), { fp32: "model.onnx", q4: "model_q4.onnx" }, ["fp32"]);
  }, 60_000);

  it("reads what the onnx package reads: opsets, inputs and outputs with axis names, counts, external data", async () => {
    for (const f of ["model.onnx", "model_q4.onnx"]) {
      const file = path.join(dir, "onnx", f);
      const mine = readOnnxHeader(file);
      const theirs = await pythonView(file);
      expect({ ...mine, producer: undefined, opset: undefined }).toEqual({ ...theirs, producer: undefined, opset: undefined });
      expect(mine.opset).toBe(17);
      expect(mine.producer).toBe("handmade 1");
    }
    expect(readOnnxHeader(path.join(dir, "onnx", "model.onnx")).externalData).toEqual(["model.onnx_data"]);
  });

  it("a truncated file or one that is not ONNX is an error naming the file, never a crash", () => {
    const whole = readFileSync(path.join(dir, "onnx", "model_q4.onnx"));
    const cut = path.join(dir, "cut.onnx");
    writeFileSync(cut, whole.subarray(0, Math.floor(whole.length / 2)));
    expect(() => readOnnxHeader(cut)).toThrow(`${cut} is not a readable ONNX file (truncated:`);
    const json = path.join(dir, "config.json");
    expect(() => readOnnxHeader(json)).toThrow(`${json} is not a readable ONNX file`);
  });
});
