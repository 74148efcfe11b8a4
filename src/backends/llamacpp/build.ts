import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { emit, type BackendContext } from "../../core/events.js";
import { CancelledError, MissingDependencyError, SlmError } from "../../core/errors.js";
import { exec, findExecutable, pathDirs, probe } from "../../core/exec.js";
import { formatDuration } from "../../core/format.js";
import { withLock } from "../../core/lock.js";
import { bundledSource } from "./source.js";
import { type BuildManifest, type GpuVariant, LLAMA_CPP_TOOLS, installDir, installRoot, parseVersion } from "./tools.js";

export interface BuildOptions {
  variant?: GpuVariant;
  /** Parallel compile jobs (default: every available core). */
  jobs?: number;
  /** Build again even when this release and variant are installed. */
  force?: boolean;
  /** Defaults to process.env. PATH finds cmake, git and the compilers; SLM_HOME says where to install. */
  env?: NodeJS.ProcessEnv;
  /** Overrides for tests: a different git bundle and release name. */
  bundle?: string;
  release?: string;
}

export interface BuildResult {
  release: string;
  variant: GpuVariant;
  dir: string;
  binDir: string;
  tools: Record<string, string>;
  manifest: BuildManifest;
  /** False when the tools were already installed (or another slm finished building them while we waited). */
  built: boolean;
  seconds: number;
}

/** The cmake cache options of a build; exported for the docs and tests. */
export function cmakeArgs(variant: GpuVariant, extra: string[] = []): string[] {
  return [
    "-DCMAKE_BUILD_TYPE=Release",
    // Static libraries: the tools then depend on nothing in the build tree and can be moved into place.
    "-DBUILD_SHARED_LIBS=OFF",
    // LLAMA_CURL is gone from newer releases (a warning there) but keeps older bundles off the network stack.
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_SERVER=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    // Tuned for this CPU: the tools run where they are built.
    "-DGGML_NATIVE=ON",
    "-DGGML_CCACHE=OFF",
    ...(variant === "cuda" ? ["-DGGML_CUDA=ON"] : []),
    ...(variant === "vulkan" ? ["-DGGML_VULKAN=ON"] : []),
    ...extra,
  ];
}

/** cmake's Makefile progress "[ 42%] Building …", or Ninja's "[12/345] …", as a fraction. */
export function parseBuildProgress(line: string): number | undefined {
  const make = /^\[\s*(\d{1,3})%\]/.exec(line);
  if (make) return Math.min(1, Number(make[1]) / 100);
  const ninja = /^\[(\d+)\/(\d+)\]/.exec(line);
  if (ninja && Number(ninja[2]) > 0) return Math.min(1, Number(ninja[1]) / Number(ninja[2]));
  return undefined;
}

interface Toolchain {
  cmake: string;
  git: string;
  extraArgs: string[];
}

/** Checks for everything the build needs before anything is written, each with its own fix. */
export async function findToolchain(variant: GpuVariant, env: NodeJS.ProcessEnv): Promise<Toolchain> {
  const dirs = pathDirs(env);
  const cmake = await findExecutable("cmake", dirs, env);
  if (!cmake) throw new MissingDependencyError("Building llama.cpp's tools needs cmake, which is not on PATH.", "install cmake (apt install cmake / brew install cmake)");
  const git = await findExecutable("git", dirs, env);
  if (!git) throw new MissingDependencyError("Building llama.cpp's tools needs git (to unpack node-llama-cpp's source bundle), which is not on PATH.", "install git (apt install git / brew install git)");
  const compilers = env.CXX ? [env.CXX] : ["c++", "g++", "clang++"];
  let compiler: string | undefined;
  for (const c of compilers) if (!compiler) compiler = await findExecutable(c, dirs, env);
  if (!compiler) throw new MissingDependencyError(`Building llama.cpp's tools needs a C++ compiler (${compilers.join(", ")}), and none is on PATH.`, "install a C++ compiler (apt install g++ / xcode-select --install)");
  const extraArgs: string[] = [];
  if (variant === "cuda") {
    const cudaDirs = [env.CUDA_HOME, env.CUDA_PATH, "/usr/local/cuda"].filter((d): d is string => !!d).map((d) => path.join(d, "bin"));
    const nvcc = (await findExecutable("nvcc", dirs, env)) ?? (await findExecutable("nvcc", cudaDirs, env));
    if (!nvcc) throw new MissingDependencyError("--cuda needs the CUDA toolkit (nvcc), which was not found on PATH, in CUDA_HOME or in /usr/local/cuda.", "install the CUDA toolkit, or run `slm setup llama.cpp` without --cuda");
    // cmake only looks on PATH; name the compiler found elsewhere explicitly.
    extraArgs.push(`-DCMAKE_CUDA_COMPILER=${nvcc}`);
  }
  if (variant === "vulkan") {
    const glslc = await findExecutable("glslc", [...dirs, ...(env.VULKAN_SDK ? [path.join(env.VULKAN_SDK, "bin")] : [])], env);
    if (!glslc) throw new MissingDependencyError("--vulkan needs the Vulkan SDK (glslc and headers), and glslc was not found.", "install the Vulkan SDK (apt install libvulkan-dev glslc), or run `slm setup llama.cpp` without --vulkan");
  }
  return { cmake, git, extraArgs };
}

/**
 * Builds llama.cpp's tools from node-llama-cpp's bundled source into $SLM_HOME/llama.cpp/<release>[-gpu].
 * Everything happens in a temporary folder beside the destination, which is renamed into place only
 * when every tool is there and runs, so a failed or interrupted build leaves nothing half-installed.
 * A lock per release and variant makes a second slm wait for the first build and reuse it.
 */
export async function buildLlamaCpp(o: BuildOptions = {}, ctx: BackendContext = {}): Promise<BuildResult> {
  const env = o.env ?? process.env;
  const variant = o.variant ?? "cpu";
  const source = o.bundle ? { bundle: o.bundle, release: o.release ?? "custom" } : bundledSource();
  const release = o.release ?? source.release;
  const dest = installDir(release, variant, env);
  const root = installRoot(env);
  const jobs = o.jobs ?? os.availableParallelism();
  const toolchain = await findToolchain(variant, env);
  mkdirSync(root, { recursive: true });
  const started = performance.now();
  // 60 s staleness: the lock's heartbeat must survive a machine that is busy compiling.
  return withLock(
    `llama.cpp-build:${dest}`,
    async () => {
      const existing = installed(dest);
      if (existing && !o.force) {
        emit(ctx.onEvent, { type: "log", level: "info", message: `llama.cpp ${release}${variant === "cpu" ? "" : ` (${variant})`} is already built in ${dest}` });
        return { ...existing, built: false, seconds: (performance.now() - started) / 1000 };
      }
      const work = mkdtempSync(path.join(root, `.build-${path.basename(dest)}-`));
      try {
        return await buildIn(work, { ...o, env, variant, release, dest, jobs, bundle: source.bundle, toolchain, started }, ctx);
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
    },
    {
      staleMs: 60_000,
      onWait: () => emit(ctx.onEvent, { type: "log", level: "info", message: `Another slm is building llama.cpp ${release} into ${dest}; waiting for it…` }),
    },
  );
}

function installed(dest: string): Omit<BuildResult, "built" | "seconds"> | undefined {
  const file = path.join(dest, "build.json");
  if (!existsSync(file)) return undefined;
  try {
    const manifest = JSON.parse(readFileSync(file, "utf8")) as BuildManifest;
    const binDir = path.join(dest, "bin");
    const tools = Object.fromEntries(manifest.tools.map((t) => [t, path.join(binDir, t)]));
    if (!Object.values(tools).every((t) => existsSync(t))) return undefined;
    return { release: manifest.release, variant: manifest.variant, dir: dest, binDir, tools, manifest };
  } catch {
    return undefined;
  }
}


interface BuildContext extends BuildOptions {
  env: NodeJS.ProcessEnv;
  variant: GpuVariant;
  release: string;
  dest: string;
  jobs: number;
  bundle: string;
  toolchain: Toolchain;
  started: number;
}

async function buildIn(work: string, b: BuildContext, ctx: BackendContext): Promise<BuildResult> {
  const { env, variant, release, dest, jobs, toolchain } = b;
  const src = path.join(work, "src");
  const buildDir = path.join(work, "build");
  const stage = path.join(work, "stage");
  const label = `llama.cpp ${release}${variant === "cpu" ? "" : ` (${variant})`}`;
  const step = async <T>(id: string, title: string, fn: () => Promise<T>, doneDetail?: (t: T) => string): Promise<T> => {
    emit(ctx.onEvent, { type: "step", id, status: "start", title });
    const t0 = performance.now();
    try {
      const out = await fn();
      emit(ctx.onEvent, { type: "step", id, status: "done", title, detail: doneDetail?.(out) ?? formatDuration((performance.now() - t0) / 1000) });
      return out;
    } catch (err) {
      emit(ctx.onEvent, { type: "step", id, status: "fail", title, detail: err instanceof CancelledError ? "cancelled" : undefined });
      throw err;
    }
  };
  const debugLine = (line: string) => {
    if (line.trim()) emit(ctx.onEvent, { type: "log", level: "debug", message: line });
  };

  await step("llama.cpp:source", `Unpacking the ${label} source`, () =>
    exec(toolchain.git, ["-c", "advice.detachedHead=false", "clone", "--quiet", b.bundle, src], { env, signal: ctx.signal, label: "git clone" }),
  );
  const commit = (await probe(toolchain.git, ["-C", src, "rev-parse", "--short", "HEAD"], { env, timeoutMs: 10_000 })).stdout.trim() || undefined;

  const args = cmakeArgs(variant, toolchain.extraArgs);
  await step("llama.cpp:configure", `Configuring ${label} (cmake)`, () =>
    exec(toolchain.cmake, ["-S", src, "-B", buildDir, ...args], { env, signal: ctx.signal, label: "cmake (configure)", buffer: false, killTree: true, onLine: debugLine }),
  );

  const buildStarted = performance.now();
  let lastPct = -1;
  await step(
    "llama.cpp:build",
    `Building ${LLAMA_CPP_TOOLS.length} tools with ${jobs} ${jobs === 1 ? "job" : "jobs"}`,
    () =>
      exec(toolchain.cmake, ["--build", buildDir, "--config", "Release", "-j", String(jobs), "--target", ...LLAMA_CPP_TOOLS], {
        env,
        signal: ctx.signal,
        label: "cmake (build)",
        buffer: false,
        killTree: true,
        tailLines: 40,
        onLine: (line) => {
          debugLine(line);
          const f = parseBuildProgress(line);
          if (f === undefined) return;
          // cmake's percentages are per target and can step back (a "[100%] Built target" line, then
          // "[ 98%] Linking" for the next tool): show only increases, and 100 % only when the build ends.
          const pct = Math.min(99, Math.round(f * 100));
          if (pct <= lastPct) return;
          lastPct = pct;
          const elapsed = (performance.now() - buildStarted) / 1000;
          // Percent per second since the start: cmake's steps are uneven, so only the average is a fair ETA.
          emit(ctx.onEvent, { type: "progress", id: "llama.cpp:build", unit: "percent", current: pct, total: 100, rate: elapsed > 5 && pct > 0 ? pct / elapsed : undefined });
        },
      }),
    () => `${formatDuration((performance.now() - buildStarted) / 1000)}`,
  );

  return step(`llama.cpp:install`, `Installing into ${dest}`, async () => {
    const stageBin = path.join(stage, "bin");
    mkdirSync(stageBin, { recursive: true });
    const exe = process.platform === "win32" ? ".exe" : "";
    const tools: Record<string, string> = {};
    for (const t of LLAMA_CPP_TOOLS) {
      // Makefiles put binaries in bin/, multi-config generators (MSVC, Xcode) in bin/Release/.
      const built = [path.join(buildDir, "bin", t + exe), path.join(buildDir, "bin", "Release", t + exe)].find((f) => existsSync(f));
      if (!built) throw new SlmError(`The llama.cpp build finished but ${t} is not in ${path.join(buildDir, "bin")}.`, { hint: "Run `slm setup llama.cpp --force --verbose` to see the build's output." });
      const target = path.join(stageBin, t + exe);
      copyFileSync(built, target);
      chmodSync(target, 0o755);
      tools[t] = path.join(dest, "bin", t + exe);
    }
    // The tools must start before they are installed: a binary built for the wrong CPU fails here, not later.
    const check = await probe(path.join(stageBin, "llama-imatrix" + exe), ["--version"], { env, timeoutMs: 30_000, okExitCodes: [0, 1] });
    const v = parseVersion(`${check.stdout}\n${check.stderr}`);
    if (!v) throw new SlmError(`The freshly built llama-imatrix does not run: ${check.error ?? (check.stderr || check.stdout).slice(-300)}`);
    const manifest: BuildManifest = {
      release,
      variant,
      commit: v.commit ?? commit,
      version: v.line,
      builtAt: new Date().toISOString(),
      seconds: Math.round((performance.now() - b.started) / 1000),
      jobs,
      cmakeArgs: args,
      tools: [...LLAMA_CPP_TOOLS].map((t) => t + exe),
    };
    writeFileSync(path.join(stage, "build.json"), JSON.stringify(manifest, null, 2) + "\n");
    // Replace an older install (--force) only after the new one is complete; rename is atomic on one disk.
    const old = path.join(path.dirname(stage), "old");
    if (existsSync(dest)) renameSync(dest, old);
    renameSync(stage, dest);
    return { release, variant, dir: dest, binDir: path.join(dest, "bin"), tools, manifest, built: true, seconds: (performance.now() - b.started) / 1000 };
  }, (r) => `${Object.keys(r.tools).length} tools, ${r.manifest.version ?? "unknown version"}`);
}
