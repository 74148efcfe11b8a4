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

let pending: Promise<ConvertPython> | undefined;

export function convertPythonForTests(): Promise<ConvertPython> {
  pending ??= locate();
  return pending;
}

async function locate(): Promise<ConvertPython> {
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
      const missing = Object.keys(await missingPythonModules({ python, source: "SLM_PYTHON" }, CONVERT_TEST_MODULES));
      if (missing.length === 0) return { python };
      reasons.push(`${python} lacks ${missing.join(", ")}`);
    } catch (err) {
      reasons.push(`${python} does not run (${(err as Error).message})`);
    }
  }
  return { skip: `no Python here can run convert_hf_to_gguf.py: ${reasons.join("; ") || "no python3 found"}` };
}
