import { existsSync } from "node:fs";
import { missingPythonModules } from "../../src/backends/python/env.js";
import { findExecutable, pathDirs } from "../../src/core/exec.js";

/**
 * A Python that can run llama.cpp's convert_hf_to_gguf.py for the fixture (a llama with a SentencePiece
 * tokenizer), for the tests that convert for real: SLM_PYTHON if set, else python3 on PATH, else
 * Debian's /usr/bin/python3 (where `apt install python3-numpy python3-torch python3-sentencepiece
 * python3-yaml python3-tqdm` puts the modules). gguf itself comes from the llama.cpp checkout slm makes,
 * so it is not asked for here. Without one, the answer is the reason to skip, naming what is missing.
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
  if (process.env.SLM_PYTHON) {
    const p = await findExecutable(process.env.SLM_PYTHON, pathDirs());
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
