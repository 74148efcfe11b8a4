import { createHash } from "node:crypto";
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { ExternalError, MissingDependencyError, NetworkError, SlmError } from "../../core/errors.js";
import { emit, type BackendContext, withStep } from "../../core/events.js";
import { exec, findExecutable, pathDirs, probe } from "../../core/exec.js";
import { formatDuration } from "../../core/format.js";
import { withLock } from "../../core/lock.js";
import { packageRoot, slmPaths } from "../../core/paths.js";
import { removeDeadWork } from "../../core/pid.js";
import { venvDir, venvPython } from "./env.js";
import { installProgress, pipHasRawProgress } from "./installProgress.js";
import { llamaCppPython } from "./llamaScripts.js";
import { type PythonStack, probeStack } from "./stack.js";

export type TorchVariant = "cuda" | "cpu";

export interface SetupPythonOptions {
  /** Default: cuda where `nvidia-smi` works, else cpu. */
  variant?: TorchVariant;
  qlora?: boolean;
  force?: boolean;
  env?: NodeJS.ProcessEnv;
}

export interface SetupPythonResult {
  dir: string;
  python: string;
  variant: TorchVariant;
  qlora: boolean;
  /** False when a matching environment was already there. */
  created: boolean;
  installer: "uv" | "pip";
  stack: PythonStack;
  seconds: number;
}

/** What `slm setup python` writes into the venv, to know later what it holds. */
interface Manifest {
  variant: TorchVariant;
  qlora: boolean;
  installer: "uv" | "pip";
  requirements: string;
  createdAt: string;
}

const MANIFEST = "slm-venv.json";
/** gguf-py, transformers and the recipes need 3.10 or newer. */
const MIN_PYTHON: [number, number] = [3, 10];

export function requirementFiles(variant: TorchVariant, qlora: boolean): string[] {
  const dir = path.join(packageRoot(), "recipes");
  return [`requirements-torch-${variant}.txt`, "requirements.txt", ...(qlora ? ["requirements-qlora.txt"] : [])].map((f) => path.join(dir, f));
}

/** One hash over the requirement files, so a newer slm with other pins knows the venv is out of date. */
function requirementsHash(files: string[]): string {
  const h = createHash("sha256");
  for (const f of files) h.update(readFileSync(f));
  return h.digest("hex").slice(0, 16);
}

export async function defaultVariant(env: NodeJS.ProcessEnv = process.env): Promise<TorchVariant> {
  const smi = await findExecutable("nvidia-smi", pathDirs(env), env);
  if (!smi) return "cpu";
  const r = await probe(smi, ["-L"], { timeoutMs: 15_000 });
  return r.ok && /GPU \d+:/.test(r.stdout) ? "cuda" : "cpu";
}

/**
 * Creates $SLM_HOME/venv with torch, transformers, peft, accelerate, safetensors, sentencepiece and the
 * gguf package of the bundled llama.cpp source. Built in a temporary folder beside it and renamed into
 * place only when every module imports, so a failed or interrupted setup (or one without network)
 * leaves the previous environment, or nothing.
 */
export async function setupPython(o: SetupPythonOptions = {}, ctx: BackendContext = {}): Promise<SetupPythonResult> {
  const started = performance.now();
  const env = o.env ?? process.env;
  const variant = o.variant ?? (await defaultVariant(env));
  const qlora = o.qlora ?? false;
  const dest = venvDir(env);
  const files = requirementFiles(variant, qlora);
  const hash = requirementsHash(files);
  const home = slmPaths(env).home;
  mkdirSync(home, { recursive: true });
  return withLock(
    `python-venv:${dest}`,
    async () => {
      const existing = readManifest(dest);
      if (!o.force && existing && existing.variant === variant && (existing.qlora || !qlora) && existing.requirements === hash) {
        const stack = await probeStack({ python: venvPython(dest), source: "venv" }, { signal: ctx.signal });
        if (stack.missing.length === 0) {
          emit(ctx.onEvent, { type: "log", level: "info", message: `slm's Python environment in ${dest} is complete (${variant}${existing.qlora ? ", qlora" : ""}).` });
          return { dir: dest, python: venvPython(dest), variant, qlora: existing.qlora, created: false, installer: existing.installer, stack, seconds: (performance.now() - started) / 1000 };
        }
      }
      const base = await findBase(env, ctx);
      // llama.cpp's gguf-py comes from the bundled source: unpacked before anything slow starts.
      const llama = await llamaCppPython(ctx, env);
      removeDeadWork(home, /^\.venv-(\d+)-/);
      removeDeadWork(home, /^venv\.old-(\d+)$/);
      const work = mkdtempSync(path.join(home, `.venv-${process.pid}-`));
      // mkdtemp makes it private (0700); a venv is as readable as any installed program.
      chmodSync(work, 0o755);
      try {
        await buildVenv(work, { base, variant, files, ggufPy: path.join(llama.dir, "gguf-py"), env }, ctx);
        const stack = await step(ctx, "python:check", "Checking the installed modules", async () => {
          const s = await probeStack({ python: venvPython(work), source: "venv" }, { signal: ctx.signal, extraModules: ["gguf", ...(qlora ? ["bitsandbytes"] : [])] });
          if (s.missing.length) throw new SlmError(`The new Python environment cannot import ${s.missing.map((m) => `${m.name} (${m.error})`).join(", ")}.`, { hint: "Run again with --verbose to see the installers' output." });
          return s;
        });
        const manifest: Manifest = { variant, qlora, installer: base.installer, requirements: hash, createdAt: new Date().toISOString() };
        writeFileSync(path.join(work, MANIFEST), JSON.stringify(manifest, null, 2) + "\n");
        install(work, dest);
        const seconds = (performance.now() - started) / 1000;
        return { dir: dest, python: venvPython(dest), variant, qlora, created: true, installer: base.installer, stack: { ...stack, python: venvPython(dest) }, seconds };
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
    },
    {
      staleMs: 60_000,
      onWait: () => emit(ctx.onEvent, { type: "log", level: "info", message: `Another slm is setting up ${dest}; waiting for it…` }),
    },
  );
}

function readManifest(dir: string): Manifest | undefined {
  try {
    if (!existsSync(venvPython(dir))) return undefined;
    return JSON.parse(readFileSync(path.join(dir, MANIFEST), "utf8")) as Manifest;
  } catch {
    return undefined;
  }
}

interface Base {
  installer: "uv" | "pip";
  uv?: string;
  python: string;
  version: string;
}

/** uv when it is on PATH (much faster, and it finds or fetches a Python itself); else python3's venv and pip. */
async function findBase(env: NodeJS.ProcessEnv, ctx: BackendContext): Promise<Base> {
  const dirs = pathDirs(env);
  const uv = await findExecutable("uv", dirs, env);
  const python = (await findExecutable("python3", dirs, env)) ?? (await findExecutable("python", dirs, env));
  let version = "";
  if (python) {
    const r = await probe(python, ["-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"], { timeoutMs: 30_000, signal: ctx.signal });
    version = r.ok ? r.stdout.trim() : "";
  }
  const [major, minor] = version.split(".").map(Number);
  const recent = major !== undefined && minor !== undefined && (major > MIN_PYTHON[0] || (major === MIN_PYTHON[0] && minor >= MIN_PYTHON[1]));
  if (uv) return { installer: "uv", uv, python: recent ? python! : "", version };
  if (!python) throw new MissingDependencyError("`slm setup python` needs Python 3.10 or newer (python3 on PATH), or uv.", "install Python 3.10+ (apt install python3 python3-venv / brew install python) or uv");
  if (!recent) throw new MissingDependencyError(`${python} is Python ${version || "(unknown version)"}; slm's Python stack needs ${MIN_PYTHON.join(".")} or newer.`, "install Python 3.10+ or uv, and put it first on PATH");
  return { installer: "pip", python, version };
}

interface BuildPlan {
  base: Base;
  variant: TorchVariant;
  files: string[];
  ggufPy: string;
  env: NodeJS.ProcessEnv;
}

async function buildVenv(work: string, b: BuildPlan, ctx: BackendContext): Promise<void> {
  const { base } = b;
  const py = venvPython(work);
  await step(ctx, "python:venv", `Creating a Python environment (${base.installer === "uv" ? "uv venv" : `python ${base.version} -m venv`})`, async () => {
    if (base.uv) await run(ctx, "python:venv", b.env, base.uv, ["venv", "--quiet", ...(base.python ? ["--python", base.python] : []), work], "uv venv");
    else await run(ctx, "python:venv", b.env, base.python, ["-m", "venv", work], "python -m venv");
  });
  // pip 24.1 and newer report a download's bytes as lines ("--progress-bar raw"); older ones only its size.
  const raw = !base.uv && pipHasRawProgress((await probe(py, ["-m", "pip", "--version"], { timeoutMs: 60_000, signal: ctx.signal })).stdout);
  const pip = (id: string, args: string[]) =>
    base.uv
      ? run(ctx, id, b.env, base.uv, ["pip", "install", "--python", py, ...args], "uv pip install")
      : run(ctx, id, b.env, py, ["-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--progress-bar", raw ? "raw" : "off", ...args], "pip install");
  const [torchFile, ...rest] = b.files;
  // torch alone first: its index differs by variant, and it is most of the download.
  await step(ctx, "python:torch", `Installing torch (${b.variant === "cuda" ? "CUDA" : "CPU"})`, () => pip("python:torch", ["-r", torchFile!]));
  await step(ctx, "python:stack", "Installing transformers, peft, accelerate, safetensors, sentencepiece and llama.cpp's gguf", () => pip("python:stack", [...rest.flatMap((f) => ["-r", f]), b.ggufPy]));
}

/**
 * Runs an installer as the step `id`: what it is doing (package, download and its bytes, install) as
 * that step's progress, its "Collecting …"/"Downloading …" lines as logs and the rest as debug logs;
 * failures explained.
 */
async function run(ctx: BackendContext, id: string, env: NodeJS.ProcessEnv, file: string, args: string[], label: string): Promise<void> {
  const read = installProgress();
  let downloadStarted: { file: string; at: number } | undefined;
  try {
    await exec(file, args, {
      env: { ...env, PIP_NO_INPUT: "1" },
      extendEnv: false,
      signal: ctx.signal,
      buffer: false,
      tailLines: 40,
      label,
      killTree: true,
      onLine: (line) => {
        if (!line.trim()) return;
        const u = read(line);
        if (u?.bytes) {
          // A raw progress line: the bar's bytes, never a log line (there are thousands).
          const now = performance.now();
          if (downloadStarted?.file !== u.detail) downloadStarted = { file: u.detail, at: now };
          const secs = (now - downloadStarted.at) / 1000;
          emit(ctx.onEvent, { type: "progress", id, unit: "bytes", current: u.bytes.current, total: u.bytes.total, rate: secs > 0.5 ? u.bytes.current / secs : undefined, detail: u.detail });
          return;
        }
        const shown = /^\s*(Collecting|Downloading|Installing collected packages|Successfully installed|Resolved|Prepared|Installed)\b/.test(line);
        emit(ctx.onEvent, { type: "log", level: shown ? "info" : "debug", message: line.trim() });
        if (u) emit(ctx.onEvent, { type: "progress", id, unit: "packages", current: u.packages, detail: u.detail });
      },
    });
  } catch (err) {
    throw explainInstallError(err);
  }
}

// pip and uv word a failed connection in many ways; these are the ones that mean "no network" rather than "no such version".
const OFFLINE = /NewConnectionError|Failed to establish a new connection|Temporary failure in name resolution|Name or service not known|nodename nor servname|Network is unreachable|No route to host|ConnectTimeout|Connection refused|ProxyError|dns error|tcp connect error|failed to lookup address|Could not connect|error sending request|Failed to fetch|SSLError|certificate verify failed/i;

export function explainInstallError(err: unknown): unknown {
  if (!(err instanceof ExternalError)) return err;
  const tail = err.stderrTail;
  if (OFFLINE.test(tail) || /from versions: none\)/.test(tail) && /Retrying|WARNING: Retrying/.test(tail)) {
    return new NetworkError("Installing slm's Python packages needs the Python Package Index (pypi.org, and download.pytorch.org for CPU torch), and this machine cannot reach it.", {
      hint: "Connect to the internet (or set PIP_INDEX_URL / UV_INDEX_URL to a reachable mirror) and run `slm setup python` again; or set SLM_PYTHON to an interpreter that already has torch, transformers and peft. Nothing was installed.",
      cause: err,
    });
  }
  if (/No module named ensurepip|ensurepip is not available/.test(tail)) {
    return new MissingDependencyError("python3 cannot create virtual environments: its venv module (ensurepip) is missing.", "apt install python3-venv", { cause: err });
  }
  return err;
}

/** A step whose detail is how long it took. */
function step<T>(ctx: BackendContext, id: string, title: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  return withStep(ctx, id, title, fn, () => formatDuration((performance.now() - t0) / 1000));
}

/**
 * Moves the finished venv into place. A venv's interpreter finds its packages from its own location,
 * but installers write the absolute path into scripts (pip, torchrun, accelerate) and activate files:
 * those are rewritten to the final path.
 */
function install(work: string, dest: string): void {
  const binDir = path.join(work, process.platform === "win32" ? "Scripts" : "bin");
  for (const name of readdirSync(binDir)) {
    const file = path.join(binDir, name);
    try {
      // lstat: bin/python is usually a link to the base interpreter, which must never be written through.
      const st = lstatSync(file);
      if (!st.isFile() || st.size > 1_000_000) continue;
      const text = readFileSync(file);
      if (text.includes(0) || !text.includes(work)) continue;
      writeFileSync(file, text.toString("utf8").split(work).join(dest), { mode: st.mode });
    } catch {
      // A link or an unreadable file: leave it.
    }
  }
  const old = `${dest}.old-${process.pid}`;
  if (existsSync(dest)) renameSync(dest, old);
  renameSync(work, dest);
  rmSync(old, { recursive: true, force: true });
}
