import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { MissingDependencyError } from "../../core/errors.js";
import { slmPaths } from "../../core/paths.js";

export type Ort = typeof import("onnxruntime-node");

/** Where `slm setup onnx` installs onnxruntime-node for installs that do not carry it (a global `npm i -g`). */
export function ortInstallDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(slmPaths(env).home, "onnx");
}

let loading: Promise<Ort> | undefined;

/**
 * onnxruntime-node, imported on first use only (≈290 MB of native code that `slm --help` and GGUF
 * runs never load): slm's own node_modules first (a clone, where it is a devDependency), then the copy
 * `slm setup onnx` installed under $SLM_HOME/onnx.
 */
export function loadOrt(): Promise<Ort> {
  loading ??= (async () => {
    try {
      return await import("onnxruntime-node");
    } catch {
      const dir = ortInstallDir();
      const manifest = path.join(dir, "package.json");
      if (existsSync(manifest)) {
        try {
          return createRequire(manifest)("onnxruntime-node") as Ort;
        } catch {
          // Reported below with the command that reinstalls it.
        }
      }
      loading = undefined;
      throw new MissingDependencyError("onnxruntime-node is not installed; it runs ONNX models.", "slm setup onnx");
    }
  })();
  return loading;
}
