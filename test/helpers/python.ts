import { existsSync } from "node:fs";
import { missingPythonModules } from "../../src/backends/python/env.js";
import { findExecutable, pathDirs } from "../../src/core/exec.js";

/**
 * A Python that can run llama.cpp's convert_hf_to_gguf.py for the fixture (a llama with a SentencePiece
 * tokenizer), for the tests that convert for real: SLM_TEST_PYTHON (so CI can point these tests at an
 * interpreter without changing what SLM_PYTHON means to every other test), else SLM_PYTHON, else python3
 * on PATH, else Debian's /usr/bin/python3. It needs torch 2.1 or newer and transformers, which Debian 12
 * does not package (its python3-torch is 1.13). gguf itself comes from the llama.cpp checkout slm
 * makes, so it is not asked for here. Without one, the answer is the reason to skip, naming what is
 * missing.
 */
export const CONVERT_TEST_MODULES = ["numpy", "torch", "transformers", "yaml", "tqdm", "sentencepiece"];

export interface ConvertPython {
  python?: string;
  skip?: string;
}

/** What slm finetune's recipes import (recipeModules in src/backends/finetune/finetune.ts), plus the converter's. */
export const FINETUNE_TEST_MODULES = ["torch", "transformers", "peft", "accelerate", "safetensors", ...CONVERT_TEST_MODULES];

const pending = new Map<string, Promise<ConvertPython>>();

export function convertPythonForTests(): Promise<ConvertPython> {
  return pythonForTests(CONVERT_TEST_MODULES, "run convert_hf_to_gguf.py");
}

/** A Python for the tests that train with the real recipe (test/e2e/finetuneReal.test.ts). */
export function finetunePythonForTests(): Promise<ConvertPython> {
  return pythonForTests(FINETUNE_TEST_MODULES, "train with recipes/finetune_lora.py");
}

function pythonForTests(modules: string[], purpose: string): Promise<ConvertPython> {
  const key = modules.join(",");
  let p = pending.get(key);
  if (!p) pending.set(key, (p = locate(modules, purpose)));
  return p;
}

async function locate(modules: string[], purpose: string): Promise<ConvertPython> {
  const candidates = new Set<string>();
  for (const v of [process.env.SLM_TEST_PYTHON, process.env.SLM_PYTHON]) {
    const p = v ? await findExecutable(v, pathDirs()) : undefined;
    if (p) candidates.add(p);
  }
  const onPath = await findExecutable("python3", pathDirs());
  if (onPath) candidates.add(onPath);
  if (existsSync("/usr/bin/python3")) candidates.add("/usr/bin/python3");
  const reasons: string[] = [];
  for (const python of candidates) {
    try {
      const missing = Object.keys(await missingPythonModules({ python, source: "SLM_PYTHON" }, modules));
      if (missing.length === 0) return { python };
      reasons.push(`${python} lacks ${missing.join(", ")}`);
    } catch (err) {
      reasons.push(`${python} does not run (${(err as Error).message})`);
    }
  }
  return { skip: `no Python here can ${purpose} (set SLM_TEST_PYTHON): ${reasons.join("; ") || "no python3 found"}` };
}

/** What recipes/quantize_hf.py imports (RECIPE_MODULES in src/backends/quantize/weightsRun.ts), plus the fixture's tokenizer. */
export const QUANTIZE_TEST_MODULES = ["torch", "transformers", "safetensors", "sentencepiece"];

/** A Python for the tests that run GPTQ/AWQ with the real recipe (test/e2e/quantizeGptq.test.ts). */
export function quantizePythonForTests(): Promise<ConvertPython> {
  return pythonForTests(QUANTIZE_TEST_MODULES, "quantize with recipes/quantize_hf.py");
}

/** A Python with the Hugging Face tokenizer, to count the fixture's tokens as transformers does. */
export function tokenizerPythonForTests(): Promise<ConvertPython> {
  return pythonForTests(["transformers", "sentencepiece"], "load the fixture's Hugging Face tokenizer");
}

/** A Python with the onnx package, to write small ONNX graphs that slm's own reader did not produce (test/helpers/onnxHandmade.ts). */
export function onnxPythonForTests(): Promise<ConvertPython> {
  return pythonForTests(["onnx", "numpy"], "write ONNX graphs with the onnx package");
}

/** What recipes/export_onnx.py imports for fp32 and q4 (recipeModules in src/backends/export/run.ts), plus the fixture's tokenizer. */
export const ONNX_EXPORT_TEST_MODULES = ["torch", "transformers", "onnx", "onnxruntime", "onnx_ir", "sentencepiece"];

/** A Python that can export to ONNX with recipes/export_onnx.py and run the result in onnxruntime. */
export function onnxExportPythonForTests(): Promise<ConvertPython> {
  return pythonForTests(ONNX_EXPORT_TEST_MODULES, "export to ONNX with recipes/export_onnx.py");
}
