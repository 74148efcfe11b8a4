import { MissingDependencyError } from "../../core/errors.js";
import { SETUP_PYTHON, resolvePython, venvDir } from "../python/env.js";
import { type ModuleFacts, OPTIONAL_MODULES, STACK_MODULES, type TorchFacts, probeStack } from "../python/stack.js";

/**
 * doctor's Python section: the interpreter slm would use (SLM_PYTHON, else $SLM_HOME/venv — the same
 * rule as every command that runs Python), the versions of the fine-tuning stack in it, and the GPU
 * torch sees. Missing pieces name `slm setup python`.
 */
export const FIX_PYTHON = SETUP_PYTHON;
export const FIX_QLORA = `${SETUP_PYTHON} --qlora`;
export const PYTHON_MODULES = STACK_MODULES;
/** The part of the stack llama.cpp's converters import (peft and accelerate are for training only). */
const CONVERT_NEEDS = new Set<string>(["torch", "transformers", "sentencepiece"]);

export interface PythonFacts {
  /** "none": SLM_PYTHON is not set and the venv does not exist. */
  source: "SLM_PYTHON" | "venv" | "none";
  /** SLM_PYTHON as given, or the venv's interpreter. */
  command: string;
  path?: string;
  version?: string;
  modules?: Record<string, ModuleFacts>;
  torch?: TorchFacts;
  error?: string;
}

export interface DoctorCheckLike {
  name: string;
  status: "ok" | "warn" | "missing" | "error";
  detail: string;
  fix?: string;
}

export async function probePython(env: NodeJS.ProcessEnv, signal: AbortSignal | undefined, timeoutMs: number): Promise<PythonFacts> {
  let facts: PythonFacts;
  try {
    const py = await resolvePython(env);
    facts = { source: py.source, command: env.SLM_PYTHON && py.source === "SLM_PYTHON" ? env.SLM_PYTHON : py.python, path: py.python };
  } catch (err) {
    if (!(err instanceof MissingDependencyError)) throw err;
    return env.SLM_PYTHON ? { source: "SLM_PYTHON", command: env.SLM_PYTHON } : { source: "none", command: venvDir(env) };
  }
  const stack = await probeStack({ python: facts.path!, source: facts.source as "venv" }, { signal, baseEnv: env, timeoutMs });
  if (stack.error) return { ...facts, error: stack.error };
  return { ...facts, version: stack.version, modules: stack.modules, torch: stack.torch };
}

const versionOf = (m: ModuleFacts | undefined) => (m?.version ? m.version : "present");

export function pythonChecks(py: PythonFacts): DoctorCheckLike[] {
  const origin = py.source === "SLM_PYTHON" ? "SLM_PYTHON" : "slm's venv";
  if (!py.path) {
    const detail = py.source === "SLM_PYTHON" ? `SLM_PYTHON=${py.command} does not exist or is not executable` : `no Python environment: SLM_PYTHON is not set and ${py.command} does not exist`;
    return [
      { name: "python", status: "missing", detail: `${detail} — needed for fine-tuning and slm convert`, fix: FIX_PYTHON },
      { name: "fine-tuning stack", status: "missing", detail: `needs ${PYTHON_MODULES.join(", ")}`, fix: FIX_PYTHON },
    ];
  }
  if (py.error || !py.modules) {
    return [
      { name: "python", status: "error", detail: `${py.path} (${origin}) failed: ${py.error ?? "no answer"}`, fix: FIX_PYTHON },
      { name: "fine-tuning stack", status: "missing", detail: "cannot tell: Python did not run", fix: FIX_PYTHON },
    ];
  }
  const mods = py.modules;
  const checks: DoctorCheckLike[] = [{ name: "python", status: "ok", detail: `${py.version} (${py.path}, from ${origin})` }];
  const present = PYTHON_MODULES.filter((m) => !mods[m]?.error);
  const absent = PYTHON_MODULES.filter((m) => mods[m]?.error);
  const listed = present.map((m) => `${m} ${versionOf(mods[m])}`).join(", ");
  checks.push(
    absent.length === 0
      ? { name: "fine-tuning stack", status: "ok", detail: listed }
      : {
          name: "fine-tuning stack",
          status: "missing",
          detail: `missing ${absent.map((m) => `${m} (${mods[m]!.error})`).join(", ")}${listed ? `; has ${listed}` : ""} — needed for fine-tuning${absent.some((m) => CONVERT_NEEDS.has(m)) ? " and slm convert" : ""}`,
          fix: FIX_PYTHON,
        },
  );
  for (const m of OPTIONAL_MODULES) {
    checks.push(
      mods[m]?.error
        ? { name: m, status: "warn", detail: "not installed — only needed for QLoRA (slm finetune --qlora)", fix: FIX_QLORA }
        : { name: m, status: "ok", detail: versionOf(mods[m]) },
    );
  }
  const t = py.torch;
  if (t) {
    if (t.gpu) checks.push({ name: "torch GPU", status: "ok", detail: `CUDA ${t.cuda ?? "?"}: ${t.devices.join(", ") || "unnamed device"}` });
    else if (t.cuda) checks.push({ name: "torch GPU", status: "warn", detail: `torch is built for CUDA ${t.cuda} but sees no GPU — training runs on the CPU (tiny models only)` });
    else checks.push({ name: "torch GPU", status: "warn", detail: `CPU-only torch${t.mps ? " (Apple MPS available)" : ""} — training runs on the CPU (tiny models only); with an NVIDIA GPU, \`${SETUP_PYTHON} --cuda --force\`` });
  }
  return checks;
}
