import { probe } from "../../core/exec.js";
import type { PythonEnv } from "./env.js";

/**
 * What a Python environment holds for slm, in one interpreter start: the versions of the fine-tuning
 * stack (each module imported for real, so a broken install shows as one) and the GPU torch sees.
 * `slm doctor` reports it; `slm setup python` checks a new environment with it.
 */
export const STACK_MODULES = ["torch", "transformers", "peft", "accelerate", "safetensors", "sentencepiece"] as const;
/** Reported when present, never required by the stack as a whole (QLoRA only). */
export const OPTIONAL_MODULES = ["bitsandbytes"] as const;

export interface ModuleFacts {
  version?: string;
  error?: string;
}

export interface TorchFacts {
  /** The CUDA version torch was built with; null for a CPU build. */
  cuda: string | null;
  gpu: boolean;
  devices: string[];
  mps?: boolean;
}

export interface PythonStack {
  python: string;
  version: string;
  modules: Record<string, ModuleFacts>;
  /** Required modules that failed to import. */
  missing: { name: string; error: string }[];
  torch?: TorchFacts;
  /** Set when the interpreter did not run or answered nonsense. */
  error?: string;
}

const SCRIPT = `import importlib, json, sys
out = {"version": sys.version.split()[0], "modules": {}}
for m in sys.argv[1:]:
    try:
        mod = importlib.import_module(m)
        v = getattr(mod, "__version__", None)
        if v is None:
            try:
                import importlib.metadata as md
                v = md.version(m)
            except Exception:
                v = None
        out["modules"][m] = {"version": str(v) if v is not None else None}
    except Exception as e:
        out["modules"][m] = {"error": (type(e).__name__ + ": " + str(e)).splitlines()[0][:200]}
if "version" in out["modules"].get("torch", {}):
    import torch
    t = {"cuda": torch.version.cuda, "gpu": bool(torch.cuda.is_available()), "devices": []}
    if t["gpu"]:
        t["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None:
        t["mps"] = bool(mps.is_available())
    out["torch"] = t
print(json.dumps(out))`;

export interface StackProbeOptions {
  signal?: AbortSignal;
  /** Added to the environment (e.g. PYTHONPATH). */
  extraEnv?: Record<string, string>;
  /** The whole environment instead of process.env (doctor's tests isolate PATH and HOME). */
  baseEnv?: NodeJS.ProcessEnv;
  /** Required besides STACK_MODULES (setup checks gguf, and bitsandbytes for --qlora). */
  extraModules?: readonly string[];
  timeoutMs?: number;
}

export async function probeStack(env: PythonEnv, o: StackProbeOptions = {}): Promise<PythonStack> {
  const required = [...STACK_MODULES, ...(o.extraModules ?? [])];
  const all = [...new Set([...required, ...OPTIONAL_MODULES])];
  // Importing torch and transformers takes seconds on a cold disk; CUDA initialisation a few more.
  const r = await probe(env.python, ["-c", SCRIPT, ...all], {
    signal: o.signal,
    env: o.baseEnv ? { ...o.baseEnv, ...o.extraEnv } : o.extraEnv,
    extendEnv: !o.baseEnv,
    timeoutMs: o.timeoutMs ?? 120_000,
    label: "python",
  });
  const empty: PythonStack = { python: env.python, version: "", modules: {}, missing: [] };
  if (!r.ok) return { ...empty, error: r.error };
  const last = r.stdout.trim().split(/\r?\n/).pop() ?? "";
  let parsed: { version?: unknown; modules?: Record<string, { version?: string | null; error?: string }>; torch?: TorchFacts };
  try {
    parsed = JSON.parse(last) as typeof parsed;
  } catch {
    return { ...empty, error: `unexpected output: ${last.slice(0, 200) || "(none)"}` };
  }
  const modules: Record<string, ModuleFacts> = {};
  for (const m of all) {
    const f = parsed.modules?.[m];
    modules[m] = f?.error ? { error: f.error } : { version: f?.version ?? undefined };
  }
  const missing = required.filter((m) => modules[m]?.error).map((m) => ({ name: m, error: modules[m]!.error! }));
  return { python: env.python, version: typeof parsed.version === "string" ? parsed.version : "", modules, missing, torch: parsed.torch };
}
