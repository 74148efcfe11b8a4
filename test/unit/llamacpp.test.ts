import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildLlamaCpp, cmakeArgs, parseBuildProgress } from "../../src/backends/llamacpp/build.js";
import { LLAMA_CPP_TOOLS, findTools, installDir, parseVersion, requireTools, toolSearchDirs, toolVersion } from "../../src/backends/llamacpp/tools.js";
import { CancelledError, ExternalError, MissingDependencyError } from "../../src/core/errors.js";
import type { SlmEvent } from "../../src/core/events.js";

const posix = process.platform !== "win32";
let tmp: string;
const saved = { ...process.env };
beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), "slm-llamacpp-"));
});
afterAll(() => {
  for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
  Object.assign(process.env, saved);
  rmSync(tmp, { recursive: true, force: true });
});

function script(dir: string, name: string, body: string): string {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, name);
  writeFileSync(file, `#!/bin/sh\n${body}\n`);
  chmodSync(file, 0o755);
  return file;
}

describe("parsing", () => {
  it("reads cmake's Makefile and Ninja progress", () => {
    expect(parseBuildProgress("[ 42%] Building CXX object src/CMakeFiles/llama.dir/llama.cpp.o")).toBe(0.42);
    expect(parseBuildProgress("[100%] Built target llama-quantize")).toBe(1);
    expect(parseBuildProgress("[12/48] Building CXX object …")).toBe(0.25);
    expect(parseBuildProgress("-- Configuring done")).toBeUndefined();
  });
  it("reads llama.cpp's version banners", () => {
    expect(parseVersion("version: 0.4.0-dev (build 1, commit 80fb11a)\nbuilt with GNU 12.2.0 for Linux x86_64")).toEqual({ line: "version: 0.4.0-dev (build 1, commit 80fb11a)", version: "0.4.0-dev", build: "1", commit: "80fb11a" });
    expect(parseVersion("version: 4589 (80fb11a)\nbuilt with cc (Debian 12.2.0-14) 12.2.0 for x86_64-linux-gnu")).toEqual({ line: "version: 4589 (80fb11a)", build: "4589", commit: "80fb11a" });
    expect(parseVersion("build: 1 (unknown) with gcc")).toMatchObject({ build: "1", commit: undefined });
    expect(parseVersion("usage: llama-quantize …")).toBeUndefined();
  });
  it("configures a static, network-free, native build of only what it needs", () => {
    const args = cmakeArgs("cpu");
    for (const a of ["-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DGGML_NATIVE=ON"]) expect(args).toContain(a);
    expect(cmakeArgs("cuda")).toContain("-DGGML_CUDA=ON");
    expect(cmakeArgs("vulkan")).toContain("-DGGML_VULKAN=ON");
  });
});

describe.runIf(posix)("finding the tools", () => {
  it("looks in SLM_LLAMA_CPP_DIR, then PATH, then slm's builds (GPU variants first)", () => {
    const env = { SLM_LLAMA_CPP_DIR: "/opt/llama", PATH: "/usr/bin", SLM_HOME: "/h" };
    const dirs = toolSearchDirs(env, "b1").map((d) => `${d.origin}:${d.dir}`);
    expect(dirs.slice(0, 4)).toEqual(["SLM_LLAMA_CPP_DIR:/opt/llama", "SLM_LLAMA_CPP_DIR:/opt/llama/bin", "SLM_LLAMA_CPP_DIR:/opt/llama/build/bin", "PATH:/usr/bin"]);
    expect(dirs.slice(4, 7)).toEqual(["slm:/h/llama.cpp/b1-cuda/bin", "slm:/h/llama.cpp/b1-vulkan/bin", "slm:/h/llama.cpp/b1/bin"]);
  });

  it("reports each tool's location and a MissingDependencyError naming slm setup llama.cpp for the rest", async () => {
    const dir = path.join(tmp, "find");
    const quantize = script(dir, "llama-quantize", "exit 1");
    script(dir, "llama-imatrix", 'echo "version: 0.9.1 (build 77, commit abc1234)" >&2; echo "built with cc" >&2');
    const env = { SLM_LLAMA_CPP_DIR: dir, PATH: path.join(tmp, "empty"), SLM_HOME: path.join(tmp, "home") };
    const found = await findTools(["llama-quantize", "llama-bench"], env);
    expect(found).toEqual([{ name: "llama-quantize", path: quantize, origin: "SLM_LLAMA_CPP_DIR" }, { name: "llama-bench" }]);
    const err = await requireTools(["llama-quantize", "llama-bench"], env).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MissingDependencyError);
    expect((err as MissingDependencyError).fix).toBe("slm setup llama.cpp");
    expect((err as Error).message).toContain("llama-bench");
    expect((err as Error).message).not.toContain("llama-quantize");
    // llama-quantize has no --version: a sibling answers for the folder.
    expect(await toolVersion(quantize)).toBe("llama.cpp 0.9.1 (build 77, commit abc1234)");
  });
});

/**
 * A stand-in for cmake that behaves like a Makefile build: it prints progress and writes tools that
 * answer --version. FAKE_FAIL makes the build fail half-way; FAKE_SLEEP slows it down; every build
 * appends a line to FAKE_COUNT.
 */
function fakeToolchain(bin: string): void {
  const tools = LLAMA_CPP_TOOLS.join(" ");
  script(
    bin,
    "cmake",
    `if [ "$1" = "-S" ]; then echo "-- Configuring done"; mkdir -p "$4"; exit 0; fi
if [ "$1" = "--build" ]; then
  echo built >> "$FAKE_COUNT"
  echo "[ 10%] Building C object ggml.c.o"
  sleep "\${FAKE_SLEEP:-0}"
  echo "[ 50%] Building CXX object llama.cpp.o"
  if [ -n "$FAKE_FAIL" ]; then echo "llama.cpp:1:1: error: out of disk space" >&2; exit 2; fi
  mkdir -p "$2/bin"
  for t in ${tools}; do printf '#!/bin/sh\\necho "version: 5 (fa4e123)"\\n' > "$2/bin/$t"; chmod +x "$2/bin/$t"; done
  echo "[100%] Built target llama-quantize"
  exit 0
fi
exit 64`,
  );
  script(bin, "fake-c++", "exit 0");
}

describe.runIf(posix)("buildLlamaCpp (with a stand-in cmake)", () => {
  let bundle: string;
  let env: NodeJS.ProcessEnv;
  let home: string;
  let count: string;
  beforeAll(() => {
    const repo = path.join(tmp, "repo");
    mkdirSync(repo);
    writeFileSync(path.join(repo, "CMakeLists.txt"), "project(fake)\n");
    const git = (...a: string[]) => execFileSync("git", ["-C", repo, "-c", "user.email=t@t", "-c", "user.name=t", ...a], { stdio: "ignore" });
    git("init", "-q");
    git("add", ".");
    git("commit", "-qm", "x");
    bundle = path.join(tmp, "src.bundle");
    git("bundle", "create", bundle, "HEAD", "--all");
    const bin = path.join(tmp, "fakebin");
    fakeToolchain(bin);
    home = path.join(tmp, "slm-home");
    count = path.join(tmp, "count");
    env = { ...process.env, PATH: `${bin}${path.delimiter}${process.env.PATH}`, CXX: path.join(bin, "fake-c++"), SLM_HOME: home, FAKE_COUNT: count };
    // The build lock lives in $SLM_HOME/locks, read from process.env.
    process.env.SLM_HOME = home;
  });

  it("leaves nothing behind when the build fails, and says why with the compiler's output", async () => {
    const events: SlmEvent[] = [];
    const err = await buildLlamaCpp({ bundle, release: "t1", env: { ...env, FAKE_FAIL: "1" } }, { onEvent: (e) => events.push(e) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ExternalError);
    expect((err as Error).message).toContain("out of disk space");
    expect(existsSync(installDir("t1", "cpu", env))).toBe(false);
    expect(readdirSync(path.join(home, "llama.cpp"))).toEqual([]);
    expect(events.some((e) => e.type === "step" && e.id === "llama.cpp:build" && e.status === "fail")).toBe(true);
  });

  it("builds into $SLM_HOME/llama.cpp/<release>, with progress, a manifest and working tools", async () => {
    const events: SlmEvent[] = [];
    const r = await buildLlamaCpp({ bundle, release: "t2", env, jobs: 3 }, { onEvent: (e) => events.push(e) });
    expect(r.built).toBe(true);
    expect(r.dir).toBe(path.join(home, "llama.cpp", "t2"));
    for (const t of LLAMA_CPP_TOOLS) expect(existsSync(path.join(r.dir, "bin", t))).toBe(true);
    expect(r.manifest).toMatchObject({ release: "t2", variant: "cpu", version: "version: 5 (fa4e123)", commit: "fa4e123", jobs: 3 });
    expect(JSON.parse(readFileSync(path.join(r.dir, "build.json"), "utf8")).tools).toHaveLength(LLAMA_CPP_TOOLS.length);
    const progress = events.filter((e) => e.type === "progress").map((e) => (e.type === "progress" ? e.current : 0));
    expect(progress).toEqual([10, 50, 99]);
    expect(readdirSync(path.join(home, "llama.cpp")).filter((n) => n.startsWith(".build"))).toEqual([]);
    // findTools now finds them there, and names the version from the manifest.
    const found = await findTools(["llama-quantize"], { ...env, PATH: path.join(tmp, "empty") });
    expect(found[0]!.path).toBe(path.join(r.dir, "bin", "llama-quantize"));
    expect(await toolVersion(found[0]!.path!)).toBe("llama.cpp t2 (fa4e123)");
  });

  it("makes a second slm wait for the build in progress and reuse it instead of building twice", async () => {
    rmSync(count, { force: true });
    const slow = { ...env, FAKE_SLEEP: "2" };
    const waits: string[] = [];
    const [a, b] = await Promise.all([
      buildLlamaCpp({ bundle, release: "t3", env: slow }),
      new Promise((r) => setTimeout(r, 300)).then(() => buildLlamaCpp({ bundle, release: "t3", env: slow }, { onEvent: (e) => e.type === "log" && waits.push(e.message) })),
    ]);
    expect([a.built, b.built].sort()).toEqual([false, true]);
    expect(readFileSync(count, "utf8").trim().split("\n")).toHaveLength(1);
    expect(waits.join("\n")).toMatch(/waiting/);
  });

  it("stops the build on abort and leaves nothing behind", async () => {
    const ctl = new AbortController();
    const run = buildLlamaCpp({ bundle, release: "t4", env: { ...env, FAKE_SLEEP: "20" } }, { signal: ctl.signal, onEvent: (e) => e.type === "progress" && ctl.abort() });
    await expect(run).rejects.toBeInstanceOf(CancelledError);
    expect(existsSync(installDir("t4", "cpu", env))).toBe(false);
    expect(readdirSync(path.join(home, "llama.cpp")).filter((n) => n.startsWith(".build"))).toEqual([]);
  });

  it("names the missing toolchain piece with its own fix", async () => {
    const err = await buildLlamaCpp({ bundle, release: "t5", env: { ...env, PATH: path.join(tmp, "empty") } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MissingDependencyError);
    expect((err as MissingDependencyError).fix).toMatch(/install cmake/);
    const cuda = await buildLlamaCpp({ bundle, release: "t5", variant: "cuda", env: { ...env, CUDA_HOME: path.join(tmp, "no-cuda") } }).catch((e: unknown) => e);
    if (!existsSync("/usr/local/cuda/bin/nvcc")) {
      expect(cuda).toBeInstanceOf(MissingDependencyError);
      expect((cuda as Error).message).toMatch(/nvcc/);
    }
  });
});
