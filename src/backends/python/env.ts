import path from "node:path";
import { MissingDependencyError } from "../../core/errors.js";
import { findExecutable, pathDirs, probe } from "../../core/exec.js";
import { slmPaths } from "../../core/paths.js";

/**
 * Which Python runs slm's recipes and llama.cpp's conversion scripts. SLM_PYTHON wins (any interpreter
 * that has the modules: a conda env, the system python3 with Debian's packages, a GPU box's own
 * install); otherwise the venv that `slm setup python` made in $SLM_HOME/venv. There is no silent
 * fallback to whatever python3 is on PATH: a recipe that half-works with a stray interpreter is worse
 * than a clear "run slm setup python".
 */
export interface PythonEnv {
  python: string;
  source: "SLM_PYTHON" | "venv";
}

export const SETUP_PYTHON = "slm setup python";

export function venvDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(slmPaths(env).home, "venv");
}

/** The interpreter inside a venv folder (Scripts\python.exe on Windows). */
export function venvPython(dir: string): string {
  return process.platform === "win32" ? path.join(dir, "Scripts", "python.exe") : path.join(dir, "bin", "python");
}

export async function resolvePython(env: NodeJS.ProcessEnv = process.env): Promise<PythonEnv> {
  if (env.SLM_PYTHON) {
    // A bare name ("python3") is looked up on PATH; a path is taken as it is.
    const found = await findExecutable(env.SLM_PYTHON, pathDirs(env), env);
    if (!found) {
      throw new MissingDependencyError(`SLM_PYTHON=${env.SLM_PYTHON} does not exist or is not executable.`, SETUP_PYTHON, {
        hint: `Point SLM_PYTHON at a Python interpreter, or unset it and run \`${SETUP_PYTHON}\`.`,
      });
    }
    return { python: found, source: "SLM_PYTHON" };
  }
  const venv = venvPython(venvDir(env));
  if (await findExecutable(venv, [], env)) return { python: venv, source: "venv" };
  throw new MissingDependencyError(`No Python environment for slm: SLM_PYTHON is not set and ${venvDir(env)} does not exist.`, SETUP_PYTHON, {
    hint: `Run \`${SETUP_PYTHON}\` (creates that venv with torch, transformers, peft…), or set SLM_PYTHON to an interpreter that has them.`,
  });
}

/** pip's name for a module when it differs (what to tell someone with their own interpreter to install). */
const PIP_NAME: Record<string, string> = {
  yaml: "pyyaml",
  gguf: "gguf (llama.cpp's gguf-py)",
  google: "protobuf",
};

// Imports for real, rather than looking the module up: a torch that is present but cannot load its
// CUDA libraries is missing as far as a recipe is concerned. The reason goes back with the name.
const IMPORT_SCRIPT = `import importlib, json, sys
missing = {}
for m in sys.argv[1:]:
    try:
        importlib.import_module(m)
    except Exception as e:
        missing[m] = f"{type(e).__name__}: {e}".splitlines()[0][:200]
print(json.dumps(missing))`;

/** Which of `modules` fail to import in `env`, with why; a Python that does not run at all throws. */
export async function missingPythonModules(env: PythonEnv, modules: readonly string[], opts: { signal?: AbortSignal; extraEnv?: Record<string, string> } = {}): Promise<Record<string, string>> {
  if (modules.length === 0) return {};
  const r = await probe(env.python, ["-c", IMPORT_SCRIPT, ...modules], { signal: opts.signal, env: opts.extraEnv, timeoutMs: 120_000, label: "python" });
  const last = r.stdout.trim().split(/\r?\n/).pop() ?? "";
  if (r.ok) {
    try {
      return JSON.parse(last) as Record<string, string>;
    } catch {
      // Fall through: something printed over our answer.
    }
  }
  throw new MissingDependencyError(`${describe(env)} does not run: ${r.error ?? `unexpected output ${JSON.stringify(last.slice(0, 200))}`}`, SETUP_PYTHON, { hint: fixHint(env) });
}

/**
 * Throws a MissingDependencyError listing the modules that `purpose` needs and `env` cannot import,
 * and how to get them. One Python start for the whole list.
 */
export async function requirePythonModules(env: PythonEnv, modules: string[], purpose: string, opts: { signal?: AbortSignal; extraEnv?: Record<string, string>; fix?: string } = {}): Promise<void> {
  const missing = await missingPythonModules(env, modules, opts);
  const names = Object.keys(missing);
  if (names.length === 0) return;
  const detail = names.map((m) => `${m} (${missing[m]})`).join(", ");
  const fix = opts.fix ?? SETUP_PYTHON;
  const pipNames = names.map((m) => PIP_NAME[m] ?? m).join(" ");
  throw new MissingDependencyError(`${purpose} needs Python modules that ${describe(env)} cannot import: ${detail}.`, fix, {
    hint: env.source === "SLM_PYTHON" ? `Install them into that interpreter (${pipNames}), or unset SLM_PYTHON and run \`${fix}\`.` : `Run \`${fix}\`: it completes slm's Python environment.`,
  });
}

export function describe(env: PythonEnv): string {
  return env.source === "SLM_PYTHON" ? `SLM_PYTHON (${env.python})` : `slm's Python environment (${env.python})`;
}

function fixHint(env: PythonEnv): string {
  return env.source === "SLM_PYTHON" ? `Fix or unset SLM_PYTHON, then run \`${SETUP_PYTHON}\`.` : `Run \`${SETUP_PYTHON} --force\` to make it again.`;
}
