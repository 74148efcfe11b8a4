import { MissingDependencyError } from "../../core/errors.js";
import type { BackendContext } from "../../core/events.js";
import type { RuntimeLoadOptions, RuntimeModel } from "../runtime/types.js";
import type { ModelEntry } from "../store/types.js";

// Placeholder until the ONNX runtime lands (issue 12, branch i12-onnx replaces this file).
export async function loadOnnxModel(entry: ModelEntry, _o: RuntimeLoadOptions, _ctx: BackendContext = {}): Promise<RuntimeModel> {
  throw new MissingDependencyError(`${entry.name} is an ONNX model; the ONNX runtime is not built yet.`, "slm setup onnx");
}
