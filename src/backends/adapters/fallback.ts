/**
 * Adapters of architectures the TypeScript converter does not know go through llama.cpp's own
 * convert_lora_to_gguf.py (from the source node-llama-cpp ships) in slm's Python env. The script
 * needs the base model's config.json (--base); it writes into a temporary folder beside `out`, and the
 * file is renamed into place once its header reads back as a whole adapter.
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { CancelledError, ExternalError, UsageError } from "../../core/errors.js";
import { emit, type BackendContext } from "../../core/events.js";
import { readGgufHeader } from "../gguf/reader.js";
import { readGgufSummary } from "../gguf/summary.js";
import { requirePythonModules, resolvePython } from "../python/env.js";
import { llamaCppScript, runLlamaCppScript } from "../python/llamaScripts.js";
import type { BaseModelInfo } from "./baseModel.js";
import type { ConvertAdapterOptions, ConvertAdapterResult } from "./convert.js";
import type { OutType } from "../gguf/quants.js";
import type { PeftAdapter } from "./peft.js";

export interface ScriptConvertOptions extends ConvertAdapterOptions {
  outtype: OutType;
  adapter: PeftAdapter;
  base: BaseModelInfo;
}

/** What convert_lora_to_gguf.py and its `conversion` package import (gguf comes from the checkout). */
const MODULES = ["numpy", "torch", "transformers", "safetensors", "yaml", "gguf"];

export async function convertWithScript(o: ScriptConvertOptions, ctx: BackendContext): Promise<ConvertAdapterResult> {
  const arch = o.base.hfArchitecture ?? o.base.architecture ?? "unknown";
  if (!o.base.configDir) {
    throw new UsageError(`${o.adapter.dir} is an adapter for ${arch}, which slm converts with llama.cpp's convert_lora_to_gguf.py; that needs the base model's HF config.json, and ${o.base.source} is a GGUF file.`, {
      hint: "Pull the base model's HF files (slm pull <repo> --format hf) so that base_model_name_or_path resolves, or convert the adapter yourself with convert_lora_to_gguf.py --base.",
    });
  }
  emit(ctx.onEvent, { type: "log", level: "info", message: `${arch} is not in the llama family that slm converts itself; using llama.cpp's convert_lora_to_gguf.py` });
  const python = await resolvePython();
  const s = await llamaCppScript("convert_lora_to_gguf.py", ctx);
  await requirePythonModules(python, MODULES, `Converting a ${arch} LoRA adapter (llama.cpp's convert_lora_to_gguf.py)`, { signal: ctx.signal, extraEnv: s.env });
  const out = path.resolve(o.out);
  mkdirSync(path.dirname(out), { recursive: true });
  const work = mkdtempSync(path.join(path.dirname(out), ".convert-lora-"));
  try {
    const tmpOut = path.join(work, path.basename(out));
    await runLlamaCppScript(python.python, s, ["--base", o.base.configDir, "--outtype", o.outtype, "--outfile", tmpOut, o.adapter.dir], ctx).catch((err: unknown) => {
      const unsupported = err instanceof ExternalError ? /Model (\S+) is not supported/.exec(err.stderrTail) : null;
      throw unsupported ? new UsageError(`llama.cpp's converter does not support LoRA adapters for ${unsupported[1]}.`, { cause: err }) : err;
    });
    if (ctx.signal?.aborted) throw new CancelledError();
    const summary = await readGgufSummary(tmpOut);
    const alpha = readGgufHeader(tmpOut).metadata.get("adapter.lora.alpha");
    renameSync(tmpOut, out);
    return { path: out, architecture: summary.architecture, tensors: summary.tensorCount, alpha: Number(alpha), size: statSync(out).size, converter: "python" };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
