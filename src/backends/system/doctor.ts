import { existsSync } from "node:fs";
import { readFile, stat, statfs } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { BackendContext } from "../../core/events.js";
import { findExecutable, pathDirs, probe } from "../../core/exec.js";
import { formatBytes } from "../../core/format.js";
import { hubEndpoint, hubOffline, isTruthyEnv, slmPaths, type SlmPaths } from "../../core/paths.js";
import { UNWRITABLE_REASON, type Unwritable, unwritableReason } from "../../core/storage.js";
import { loadedLibllama } from "../llama/native/addon.js";
import { SETUP_COMMAND, toolSearchDirs } from "../llamacpp/tools.js";
import type { OrtStatus } from "../onnx/install.js";
import { type PythonFacts, probePython, pythonChecks } from "./python.js";

export { findExecutable } from "../../core/exec.js";

export const FIX_LLAMA_CPP = SETUP_COMMAND;
export { FIX_PYTHON, FIX_QLORA, PYTHON_MODULES, type PythonFacts } from "./python.js";

/**
 * `slm doctor`: what this machine has, and what the later features (llama.cpp tools, fine-tuning) still
 * need. Every probe turns its own failure into a check with a reason, so the report is always complete.
 */

export type CheckStatus = "ok" | "warn" | "missing" | "error";

export interface DoctorCheck {
  name: string;
  status: CheckStatus;
  detail: string;
  /** The command or step that fixes a warn/missing/error. */
  fix?: string;
}

export interface SystemFacts {
  node: { version: string; required: string; meetsRequirement: boolean };
  os: { platform: NodeJS.Platform; release: string; arch: string };
  cpu: {
    model: string;
    cores: number;
    /** Instruction-set extensions llama.cpp uses, from /proc/cpuinfo; "unknown" where that is not read. */
    features: Record<string, boolean> | "unknown";
  };
  memory: { total: number; free: number };
}

export interface GpuFacts {
  /** What node-llama-cpp loaded: "cuda" | "vulkan" | "metal", false for CPU only, null when it failed. */
  type: string | false | null;
  devices: string[];
  vram?: { total: number; used: number; free: number };
  /** GPU types node-llama-cpp thinks this machine could use. */
  supportedTypes?: (string | false)[];
  binary?: { buildType: string; release: string; cpuFeatures: string[]; libllama?: string };
  error?: string;
}

/** slm's log-probability addon (src/backends/llama/native) for the libllama node-llama-cpp loaded. */
export interface NativeAddonFacts {
  libllama?: string;
  /** The built addon, when it is in the cache. */
  file?: string;
  /** What building it needs and is missing ("" when nothing). */
  missing: string;
  /** SLM_NATIVE_LOGITS turns it off. */
  off: boolean;
}

export interface DiskFacts {
  path: string;
  exists: boolean;
  /** The nearest existing folder, which is what was measured when `path` does not exist yet. */
  measured?: string;
  free?: number;
  total?: number;
  error?: string;
  /** Why slm could not write there (read-only, permission, a file in the way, full); absent when it can. */
  unwritable?: Unwritable;
}

export interface StorageFacts {
  paths: SlmPaths;
  home: DiskFacts;
  hubCache: DiskFacts;
  endpoint: string;
  /** Whether a token is configured; the token itself never enters the report. */
  hfToken: { set: boolean; source?: "HF_TOKEN" | "HUGGING_FACE_HUB_TOKEN" | "token file" };
  offline: boolean;
}

export interface ProgramFacts {
  command: string;
  path?: string;
  version?: string;
  error?: string;
}

export interface FeatureFacts {
  llamaCppDir?: string;
  llamaCppTools: { name: (typeof LLAMA_CPP_TOOLS)[number]; path?: string }[];
  cmake: ProgramFacts;
  compiler: ProgramFacts;
  python: PythonFacts;
  /** onnxruntime-node, for ONNX models: version, where from, execution providers. */
  onnx: OrtStatus;
  nativeAddon?: NativeAddonFacts;
}

export interface DoctorReport {
  durationMs: number;
  system: SystemFacts;
  gpu: GpuFacts;
  storage: StorageFacts;
  features: FeatureFacts;
  sections: { system: DoctorCheck[]; gpu: DoctorCheck[]; storage: DoctorCheck[]; features: DoctorCheck[] };
}

type LlamaModule = Pick<typeof import("node-llama-cpp"), "getLlama" | "getLlamaGpuTypes" | "LlamaLogLevel">;

export interface DoctorOptions {
  /** Defaults to process.env; tests pass their own. */
  env?: NodeJS.ProcessEnv;
  /** Replaces `import("node-llama-cpp")`, so tests can make the GPU probe fail. */
  importLlama?: () => Promise<LlamaModule>;
  /** Replaces the onnxruntime-node probe, so tests can see the line of a machine without it. */
  ortStatus?: () => Promise<OrtStatus>;
}

export const LLAMA_CPP_TOOLS = ["llama-quantize", "llama-imatrix", "llama-perplexity", "llama-bench"] as const;
const TOOL_PURPOSE: Record<(typeof LLAMA_CPP_TOOLS)[number], string> = {
  "llama-quantize": "slm quantize",
  "llama-imatrix": "importance-matrix (low-bit) quantization",
  "llama-perplexity": "checking slm eval's perplexity against llama.cpp's own (tests, bench/)",
  "llama-bench": "comparing slm bench with llama-bench (tests, bench/)",
};
/** Tools only the tests and benchmarks compare against: slm eval and slm bench compute their figures themselves. */
const COMPARISON_ONLY = new Set<string>(["llama-perplexity", "llama-bench"]);
/** Kept in step with package.json `engines`. */
const NODE_MAJOR_REQUIRED = 20;
const LOW_DISK_BYTES = 10e9;
const LOW_RAM_BYTES = 2e9;
const PROGRAM_TIMEOUT_MS = 5_000;
/** Importing torch and transformers (and CUDA's start) is the slowest probe: seconds on a cold disk. */
const PYTHON_TIMEOUT_MS = 60_000;
/** getLlama with build "never" only loads prebuilt binaries; a slower answer means something is wedged. */
const GPU_TIMEOUT_MS = 20_000;

export async function runDoctor(ctx: BackendContext = {}, options: DoctorOptions = {}): Promise<DoctorReport> {
  const started = performance.now();
  const env = options.env ?? process.env;
  const [system, gpu, storage, features] = await Promise.all([
    probeSystem(),
    probeGpu(options.importLlama ?? (() => import("node-llama-cpp"))),
    probeStorage(env),
    probeFeatures(env, ctx.signal, options.ortStatus),
  ]);
  ctx.signal?.throwIfAborted();
  features.nativeAddon = await nativeAddonFacts(gpu.binary?.libllama, env);
  return {
    durationMs: Math.round(performance.now() - started),
    system,
    gpu,
    storage,
    features,
    sections: { system: systemChecks(system), gpu: gpuChecks(gpu), storage: storageChecks(storage), features: featureChecks(features) },
  };
}

// ── System ─────────────────────────────────────────────────────────────────────────────────────────

async function probeSystem(): Promise<SystemFacts> {
  const major = Number(process.versions.node.split(".")[0]);
  return {
    node: { version: process.version, required: `>=${NODE_MAJOR_REQUIRED}`, meetsRequirement: major >= NODE_MAJOR_REQUIRED },
    os: { platform: process.platform, release: os.release(), arch: process.arch },
    cpu: { model: os.cpus()[0]?.model.trim() || "unknown", cores: os.availableParallelism(), features: await cpuFeatures() },
    memory: { total: os.totalmem(), free: os.freemem() },
  };
}

/** Our name → the /proc/cpuinfo flag that announces it (x86 "flags", ARM "Features"). */
const X86_FEATURES: Record<string, string> = {
  sse3: "pni",
  ssse3: "ssse3",
  avx: "avx",
  avx2: "avx2",
  fma: "fma",
  f16c: "f16c",
  avx512f: "avx512f",
  avx512bw: "avx512bw",
  avx512vnni: "avx512_vnni",
  avx512bf16: "avx512_bf16",
  avxvnni: "avx_vnni",
  amx: "amx_int8",
};
const ARM_FEATURES: Record<string, string[]> = {
  // aarch64 calls NEON "asimd"; 32-bit ARM calls it "neon".
  neon: ["asimd", "neon"],
  fp16: ["asimdhp", "fphp"],
  dotprod: ["asimddp"],
  i8mm: ["i8mm"],
  sve: ["sve"],
  bf16: ["bf16"],
};

export async function cpuFeatures(cpuinfoPath = "/proc/cpuinfo"): Promise<Record<string, boolean> | "unknown"> {
  if (process.platform !== "linux") return "unknown";
  let text: string;
  try {
    text = await readFile(cpuinfoPath, "utf8");
  } catch {
    return "unknown";
  }
  return parseCpuFlags(text);
}

export function parseCpuFlags(cpuinfo: string): Record<string, boolean> | "unknown" {
  const line = /^(flags|Features)\s*:(.*)$/m.exec(cpuinfo);
  if (!line) return "unknown";
  const flags = new Set(line[2]!.trim().split(/\s+/));
  const out: Record<string, boolean> = {};
  if (line[1] === "flags") {
    for (const [name, flag] of Object.entries(X86_FEATURES)) out[name] = flags.has(flag);
  } else {
    for (const [name, names] of Object.entries(ARM_FEATURES)) out[name] = names.some((n) => flags.has(n));
  }
  return out;
}

function systemChecks(s: SystemFacts): DoctorCheck[] {
  const checks: DoctorCheck[] = [
    s.node.meetsRequirement
      ? { name: "node", status: "ok", detail: `${s.node.version} (needs ${s.node.required})` }
      : { name: "node", status: "error", detail: `${s.node.version}, but slm needs Node ${s.node.required}`, fix: `install Node ${NODE_MAJOR_REQUIRED} or newer` },
    { name: "os", status: "ok", detail: `${s.os.platform} ${s.os.release} ${s.os.arch}` },
    { name: "cpu", status: "ok", detail: `${s.cpu.model}, ${s.cpu.cores} ${s.cpu.cores === 1 ? "core" : "cores"} available` },
  ];
  const f = s.cpu.features;
  if (f === "unknown") {
    checks.push({ name: "cpu features", status: "ok", detail: `not read on ${s.os.platform} (only /proc/cpuinfo on Linux)` });
  } else {
    const present = Object.entries(f).filter(([, v]) => v).map(([k]) => k);
    const x86 = "avx2" in f;
    // Without AVX2 (x86) or NEON (ARM) llama.cpp falls back to scalar kernels, several times slower.
    const lacking = x86 ? !f.avx2 : !f.neon;
    checks.push({
      name: "cpu features",
      status: lacking ? "warn" : "ok",
      detail: `${present.join(" ") || "none of interest"}${lacking ? ` — no ${x86 ? "AVX2" : "NEON"}: llama.cpp runs much slower on this CPU` : ""}`,
    });
  }
  checks.push({
    name: "memory",
    status: s.memory.free < LOW_RAM_BYTES ? "warn" : "ok",
    detail: `${formatBytes(s.memory.total)} total, ${formatBytes(s.memory.free)} free${s.memory.free < LOW_RAM_BYTES ? " — only the smallest models will load" : ""}`,
  });
  return checks;
}

// ── GPU ────────────────────────────────────────────────────────────────────────────────────────────

async function probeGpu(importLlama: () => Promise<LlamaModule>): Promise<GpuFacts> {
  const logs: string[] = [];
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`node-llama-cpp did not load within ${GPU_TIMEOUT_MS / 1000} s`)), GPU_TIMEOUT_MS);
    timer.unref();
  });
  const probe = async (): Promise<GpuFacts> => {
    const m = await importLlama();
    // build "never": a doctor must not start a multi-minute llama.cpp build when no prebuilt binary fits.
    const llama = await m.getLlama({
      gpu: "auto",
      build: "never",
      progressLogs: false,
      logLevel: m.LlamaLogLevel.error,
      logger: (_level, message) => void logs.push(message.trim()),
    });
    try {
      const [devices, vram, supportedTypes] = await Promise.all([
        llama.getGpuDeviceNames(),
        llama.getVramState(),
        m.getLlamaGpuTypes("supported").catch(() => undefined),
      ]);
      return {
        type: llama.gpu,
        devices,
        vram: llama.gpu === false ? undefined : { total: vram.total, used: vram.used, free: vram.free },
        supportedTypes,
        binary: { buildType: llama.buildType, release: llama.llamaCppRelease.release, cpuFeatures: llamaCpuFeatures(llama.systemInfo), libllama: loadedLibllama() },
      };
    } finally {
      await llama.dispose().catch(() => undefined);
    }
  };
  try {
    return await Promise.race([probe(), timeout]);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    const tail = logs.filter(Boolean).slice(-3).join("; ");
    return { type: null, devices: [], error: tail && !reason.includes(tail) ? `${reason} (${tail})` : reason };
  } finally {
    clearTimeout(timer);
  }
}

/** llama.cpp's own view of the CPU, e.g. "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 0 | …" → ["SSE3", "AVX"]. */
export function llamaCpuFeatures(systemInfo: string): string[] {
  return [...systemInfo.matchAll(/([A-Z0-9_]+) = 1/g)].map((m) => m[1]!);
}

function gpuChecks(g: GpuFacts): DoctorCheck[] {
  if (g.type === null) {
    return [{ name: "gpu", status: "error", detail: `node-llama-cpp could not start: ${g.error ?? "unknown reason"}`, fix: "npx --no node-llama-cpp inspect gpu" }];
  }
  const checks: DoctorCheck[] = [];
  if (g.type === false) {
    checks.push({ name: "gpu", status: "warn", detail: "none usable — inference runs on the CPU (node-llama-cpp found no CUDA, Vulkan or Metal)" });
  } else {
    checks.push({ name: "gpu", status: "ok", detail: `${g.type}: ${g.devices.join(", ") || "unnamed device"}` });
    if (g.vram) checks.push({ name: "vram", status: "ok", detail: `${formatBytes(g.vram.total)} total, ${formatBytes(g.vram.free)} free` });
  }
  if (g.binary) {
    const cpu = g.binary.cpuFeatures.length ? `; CPU: ${g.binary.cpuFeatures.join(" ")}` : "";
    // The prebuilt CPU binaries target generic CPU generations: measured 2× slower F16 prompt processing
    // than a native build on the dev machine (src/backends/llama/engine.ts).
    const prebuiltCpu = g.binary.buildType === "prebuilt" && g.type === false;
    checks.push({
      name: "llama.cpp binding",
      status: prebuiltCpu ? "warn" : "ok",
      detail: `${g.binary.buildType} ${g.binary.release}${cpu}${prebuiltCpu ? " (generic CPU build; a native one processes prompts faster)" : ""}`,
      ...(prebuiltCpu ? { fix: "slm setup engine" } : {}),
    });
  }
  return checks;
}

// ── Storage and paths ──────────────────────────────────────────────────────────────────────────────

async function probeStorage(env: NodeJS.ProcessEnv): Promise<StorageFacts> {
  const p = slmPaths(env);
  const [home, hubCache, hfToken] = await Promise.all([diskFacts(p.home), diskFacts(p.hubCache), tokenPresence(env, p.hfHome)]);
  return { paths: p, home, hubCache, endpoint: hubEndpoint(env), hfToken, offline: hubOffline(env) };
}

/** Free space where `target` lives, or will live once created (its nearest existing ancestor). */
export async function diskFacts(target: string): Promise<DiskFacts> {
  const unwritable = unwritableReason(target);
  const facts = await spaceFacts(target);
  return unwritable ? { ...facts, unwritable } : facts;
}

async function spaceFacts(target: string): Promise<DiskFacts> {
  let dir = path.resolve(target);
  for (;;) {
    try {
      await stat(dir);
      break;
    } catch (err) {
      const parent = path.dirname(dir);
      const code = (err as NodeJS.ErrnoException).code;
      if ((code !== "ENOENT" && code !== "ENOTDIR") || parent === dir) {
        return { path: target, exists: false, error: err instanceof Error ? err.message : String(err) };
      }
      dir = parent;
    }
  }
  const exists = dir === path.resolve(target);
  try {
    const s = await statfs(dir);
    return { path: target, exists, measured: dir, free: s.bavail * s.bsize, total: s.blocks * s.bsize };
  } catch (err) {
    return { path: target, exists, measured: dir, error: err instanceof Error ? err.message : String(err) };
  }
}

/** Mirrors hubToken()'s lookup order without ever holding the token's value in the report. */
async function tokenPresence(env: NodeJS.ProcessEnv, hfHome: string): Promise<StorageFacts["hfToken"]> {
  if (env.HF_TOKEN?.trim()) return { set: true, source: "HF_TOKEN" };
  if (env.HUGGING_FACE_HUB_TOKEN?.trim()) return { set: true, source: "HUGGING_FACE_HUB_TOKEN" };
  try {
    const text = await readFile(env.HF_TOKEN_PATH || path.join(hfHome, "token"), "utf8");
    if (text.trim()) return { set: true, source: "token file" };
  } catch {
    // No token file is the common case.
  }
  return { set: false };
}

function diskCheck(name: string, env: string, d: DiskFacts): DoctorCheck {
  const where = `${d.path}${d.exists ? "" : " (not created yet)"}`;
  if (d.unwritable) {
    const { reason, at } = d.unwritable;
    return {
      name,
      status: "error",
      detail: `${where} — cannot write: ${at === path.resolve(d.path) ? "it" : at} ${UNWRITABLE_REASON[reason]}`,
      fix: reason === "full" ? "free some disk space, or point it at a larger disk" : `point ${env} at a folder you can write to`,
    };
  }
  if (d.free === undefined) return { name, status: "error", detail: `${where}: cannot read free space: ${d.error ?? "unknown reason"}` };
  const low = d.free < LOW_DISK_BYTES;
  return {
    name,
    status: low ? "warn" : "ok",
    detail: `${where} — ${formatBytes(d.free)} free of ${formatBytes(d.total ?? Number.NaN)}${low ? ", low for model files" : ""}`,
    fix: low ? "free some disk space, or point it at a larger disk" : undefined,
  };
}

function storageChecks(s: StorageFacts): DoctorCheck[] {
  return [
    diskCheck("SLM_HOME", "SLM_HOME", s.home),
    diskCheck("HF cache", "HF_HUB_CACHE (or HF_HOME)", s.hubCache),
    s.offline
      ? { name: "hub", status: "warn", detail: `${s.endpoint} — offline (HF_HUB_OFFLINE): only models already in the cache can be used` }
      : { name: "hub", status: "ok", detail: s.endpoint },
    { name: "HF token", status: "ok", detail: s.hfToken.set ? `set (${s.hfToken.source})` : "not set — public models only" },
  ];
}

// ── Features ───────────────────────────────────────────────────────────────────────────────────────

/** onnxruntime-node loaded the way ONNX models load it (slm's node_modules, else $SLM_HOME/onnx); a load failure is data. */
async function probeOrt(): Promise<OrtStatus> {
  const { ortStatus } = await import("../onnx/install.js");
  return ortStatus();
}

async function probeFeatures(env: NodeJS.ProcessEnv, signal: AbortSignal | undefined, ort: () => Promise<OrtStatus> = probeOrt): Promise<FeatureFacts> {
  const llamaCppDir = env.SLM_LLAMA_CPP_DIR ? path.resolve(env.SLM_LLAMA_CPP_DIR) : undefined;
  // The same search as every command that runs the tools: SLM_LLAMA_CPP_DIR, PATH, then what
  // `slm setup llama.cpp` built under $SLM_HOME/llama.cpp.
  const toolDirs = toolSearchDirs(env).map((d) => d.dir);
  const [llamaCppTools, cmake, compiler, python, onnx] = await Promise.all([
    Promise.all(LLAMA_CPP_TOOLS.map(async (name) => ({ name, path: await findExecutable(name, toolDirs, env) }))),
    programFacts(["cmake"], env, signal),
    programFacts(env.CXX ? [env.CXX] : ["c++", "g++", "clang++"], env, signal),
    probePython(env, signal, PYTHON_TIMEOUT_MS),
    ort().catch((err: Error): OrtStatus => ({ available: false, providers: [], error: err.message })),
  ]);
  return { llamaCppDir, llamaCppTools, cmake, compiler, python, onnx };
}

async function programFacts(names: string[], env: NodeJS.ProcessEnv, signal: AbortSignal | undefined): Promise<ProgramFacts> {
  for (const command of names) {
    const file = await findExecutable(command, pathDirs(env), env);
    if (!file) continue;
    const r = await runProbe(file, ["--version"], env, PROGRAM_TIMEOUT_MS, signal);
    // "cmake version 3.25.1" → "3.25.1"; compilers' banners ("g++ (Debian 12.2.0-14) 12.2.0") stay whole.
    const version = r.ok ? firstLine(r.stdout)?.replace(/^\S+ version /, "") : undefined;
    return { command, path: file, version, error: r.ok ? undefined : r.error };
  }
  return { command: names.join(" / ") };
}

function firstLine(s: string): string | undefined {
  return s.split(/\r?\n/).map((l) => l.trim()).find(Boolean);
}

interface ProbeResult {
  ok: boolean;
  stdout: string;
  error?: string;
}

/** Runs a probe that is allowed to fail, through the shared exec helper: the failure becomes data for a check. */
async function runProbe(file: string, args: string[], env: NodeJS.ProcessEnv, timeout: number, signal: AbortSignal | undefined): Promise<ProbeResult> {
  const r = await probe(file, args, { env, extendEnv: false, timeoutMs: timeout, signal });
  return { ok: r.ok, stdout: r.stdout, error: r.error };
}

function featureChecks(f: FeatureFacts): DoctorCheck[] {
  const allTools = f.llamaCppTools.every((t) => t.path);
  const looked = f.llamaCppDir ? "in SLM_LLAMA_CPP_DIR, on PATH or in $SLM_HOME/llama.cpp" : "on PATH, in SLM_LLAMA_CPP_DIR or in $SLM_HOME/llama.cpp";
  const checks: DoctorCheck[] = f.llamaCppTools.map((t) =>
    t.path
      ? { name: t.name, status: "ok", detail: t.path }
      : COMPARISON_ONLY.has(t.name)
        ? { name: t.name, status: "warn", detail: `not found ${looked} — only for ${TOOL_PURPOSE[t.name]}; slm does not need it`, fix: FIX_LLAMA_CPP }
        : { name: t.name, status: "missing", detail: `not found ${looked} — needed for ${TOOL_PURPOSE[t.name]}`, fix: FIX_LLAMA_CPP },
  );
  // cmake and a compiler only matter for building the llama.cpp tools; once those exist, their absence is a note.
  const buildTool = (name: string, p: ProgramFacts, fix: string): DoctorCheck => {
    if (p.path && !p.error) return { name, status: "ok", detail: `${p.version ?? "unknown version"} (${p.path})` };
    if (p.path) return { name, status: "error", detail: `${p.path}: ${p.error}`, fix };
    return allTools
      ? { name, status: "warn", detail: `${p.command} not found — not needed while the llama.cpp tools are installed` }
      : { name, status: "missing", detail: `${p.command} not found — needed to build the llama.cpp tools`, fix };
  };
  checks.push(buildTool("cmake", f.cmake, "install cmake (apt install cmake / brew install cmake)"));
  checks.push(buildTool("C++ compiler", f.compiler, "install a C++ compiler (apt install g++ / xcode-select --install)"));

  if (f.nativeAddon) checks.push(nativeAddonCheck(f.nativeAddon));
  checks.push(...pythonChecks(f.python));
  checks.push(onnxCheck(f.onnx));
  return checks;
}

async function nativeAddonFacts(libllama: string | undefined, env: NodeJS.ProcessEnv): Promise<NativeAddonFacts> {
  const { addonPath, missingBuildTools } = await import("../llama/native/build.js");
  const off = env.SLM_NATIVE_LOGITS;
  const file = libllama ? addonPath(libllama, env) : undefined;
  return { libllama, file: file && existsSync(file) ? file : undefined, missing: await missingBuildTools(env), off: off !== undefined && off !== "" && !isTruthyEnv(off) };
}

/** Without the addon, exact log-probabilities (eval, serve's logprobs) still work, ~50× slower per position. */
export function nativeAddonCheck(n: NativeAddonFacts): DoctorCheck {
  const name = "logprob addon";
  const slow = "eval's perplexity, KLD and multiple choice and serve's logprobs take the slow exact path";
  if (n.off) return { name, status: "warn", detail: `turned off by SLM_NATIVE_LOGITS — ${slow}` };
  if (!n.libllama) return { name, status: "warn", detail: `node-llama-cpp's libllama was not found loaded — ${slow}` };
  if (n.file) return { name, status: "ok", detail: `built for ${n.libllama} (${n.file})` };
  if (n.missing) return { name, status: "warn", detail: `not built, and building it needs ${n.missing} — ${slow}`, fix: "install a C++ compiler and git (apt install g++ git / xcode-select --install)" };
  return { name, status: "ok", detail: `not built yet — built on first use (a few seconds) for ${n.libllama}` };
}

/** ONNX models only: a missing runtime is worth knowing, not a fault. */
export function onnxCheck(o: OrtStatus): DoctorCheck {
  const fix = "slm setup onnx";
  if (o.available) {
    const where = o.origin === "project" ? "slm's node_modules" : o.origin === "slm-home" ? "$SLM_HOME/onnx" : o.dir;
    return { name: "onnx runtime", status: "ok", detail: `onnxruntime-node ${o.version ?? "?"} (${where}) — ONNX models run on the CPU; providers: ${o.providers.join(", ") || "none"}` };
  }
  if (o.error) return { name: "onnx runtime", status: "error", detail: `onnxruntime-node does not load: ${o.error}`, fix: `${fix} --force` };
  return { name: "onnx runtime", status: "warn", detail: "onnxruntime-node not installed — needed only to run ONNX models", fix };
}
