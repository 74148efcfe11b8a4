import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { emit, withStep, type BackendContext } from "../../../core/events.js";
import { MissingDependencyError, SlmError } from "../../../core/errors.js";
import { exec, findExecutable, pathDirs } from "../../../core/exec.js";
import { withLock } from "../../../core/lock.js";
import { packageRoot, slmPaths } from "../../../core/paths.js";
import { bundledSource, nodeLlamaCppDir } from "../../llamacpp/source.js";

/**
 * Builds slm's log-probability addon (native/slm_logits.cc) against the libllama this process loaded.
 *
 * One compiler call, ~2–3 s: the addon includes node-llama-cpp's own addon headers (the layout of its
 * AddonContext), node-addon-api, Node's headers and llama.h from the llama.cpp source node-llama-cpp
 * ships (its git bundle; nothing of llama.cpp is kept in slm). It is linked to the loaded libllama by
 * path with that folder as rpath, so the dynamic loader hands it the copy already in memory.
 *
 * Kept in $SLM_HOME/native/<key>/ where the key covers everything the binary depends on: the libllama
 * file (path, size, mtime), node's ABI, node-llama-cpp's version and the addon's source. Written to a
 * temporary folder and renamed into place, under a lock, so concurrent slm processes build it once.
 */

export const ADDON_FILE = "slm_logits.node";

/** The addon's C++ source, shipped with slm. */
export function addonSource(): string {
  return path.join(packageRoot(), "native", "slm_logits.cc");
}

/** Where built addons are kept: SLM_NATIVE_DIR, else $SLM_HOME/native. */
export function nativeRoot(env: NodeJS.ProcessEnv = process.env): string {
  return env.SLM_NATIVE_DIR ? path.resolve(env.SLM_NATIVE_DIR) : path.join(slmPaths(env).home, "native");
}

function nodeLlamaCppVersion(dir: string): string {
  return (JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8")) as { version?: string }).version ?? "unknown";
}

/** The cache folder of the addon for `libllama`: a hash of what the binary depends on. */
export function addonKey(libllama: string): string {
  const st = statSync(libllama);
  const parts = [path.resolve(libllama), st.size, Math.round(st.mtimeMs), process.versions.modules, process.platform, process.arch, nodeLlamaCppVersion(nodeLlamaCppDir()), readFileSync(addonSource(), "utf8")];
  return createHash("sha256").update(parts.join("\0")).digest("hex").slice(0, 16);
}

export function addonPath(libllama: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(nativeRoot(env), addonKey(libllama), ADDON_FILE);
}

/** Node's C headers (node_api.h): beside the running node, as installed by its packages and installers. */
export function nodeHeaders(): string | undefined {
  const candidates = [path.join(path.dirname(process.execPath), "..", "include", "node"), "/usr/include/node", "/usr/local/include/node"];
  return candidates.find((d) => existsSync(path.join(d, "node_api.h")));
}

async function findCompiler(env: NodeJS.ProcessEnv): Promise<string | undefined> {
  const names = env.CXX ? [env.CXX] : ["c++", "g++", "clang++"];
  for (const n of names) {
    const found = path.isAbsolute(n) ? (existsSync(n) ? n : undefined) : await findExecutable(n, pathDirs(env), env);
    if (found) return found;
  }
  return undefined;
}

/** What building the addon needs and is missing on this machine ("" when nothing is). */
export async function missingBuildTools(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const missing: string[] = [];
  if (!(await findCompiler(env))) missing.push("a C++ compiler (c++, g++ or clang++)");
  if (!(await findExecutable("git", pathDirs(env), env))) missing.push("git");
  if (!nodeHeaders()) missing.push("Node's headers (node_api.h)");
  return missing.join(", ");
}

/**
 * The addon built for `libllama`, from the cache or compiled now (a visible step). Throws
 * MissingDependencyError when there is no compiler, ExternalError when the compiler fails.
 */
export async function ensureAddon(libllama: string, ctx: BackendContext = {}, env: NodeJS.ProcessEnv = process.env): Promise<{ file: string; built: boolean; seconds: number }> {
  const file = addonPath(libllama, env);
  if (existsSync(file)) return { file, built: false, seconds: 0 };
  const missing = await missingBuildTools(env);
  if (missing) throw new MissingDependencyError(`Building slm's log-probability addon needs ${missing}.`, "install a C++ compiler and git (apt install g++ git / xcode-select --install)");
  const dest = path.dirname(file);
  mkdirSync(path.dirname(dest), { recursive: true });
  const started = performance.now();
  // The lock is in the cache folder, not $SLM_HOME: SLM_NATIVE_DIR may point several homes at one cache.
  const lock = { dir: path.join(path.dirname(dest), ".locks"), staleMs: 60_000, onWait: () => emit(ctx.onEvent, { type: "log", level: "info", message: "Another slm is building the log-probability addon; waiting for it…" }) };
  return withLock(`native-addon:${dest}`, () => buildLocked(file, libllama, env, ctx, started), lock);
}

async function buildLocked(file: string, libllama: string, env: NodeJS.ProcessEnv, ctx: BackendContext, started: number): Promise<{ file: string; built: boolean; seconds: number }> {
  if (existsSync(file)) return { file, built: false, seconds: 0 };
  const dest = path.dirname(file);
  const work = mkdtempSync(path.join(path.dirname(dest), `.build-`));
  try {
    await withStep(ctx, "native:build", "Building slm's log-probability addon (once)", () => compile(work, libllama, env, ctx), () => `${((performance.now() - started) / 1000).toFixed(1)} s`);
    const stage = path.join(work, "out");
    writeFileSync(path.join(stage, "build.json"), JSON.stringify({ libllama, node: process.versions.node, modules: process.versions.modules, builtAt: new Date().toISOString() }, null, 2) + "\n");
    // A folder without the addon is the remains of something else: replace it.
    if (existsSync(dest) && !existsSync(file)) rmSync(dest, { recursive: true, force: true });
    try {
      renameSync(stage, dest);
    } catch (err) {
      // Another slm that does not share this lock folder put the same build there first.
      if (!existsSync(file)) throw err;
    }
    return { file, built: true, seconds: (performance.now() - started) / 1000 };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

async function compile(work: string, libllama: string, env: NodeJS.ProcessEnv, ctx: BackendContext): Promise<void> {
  const compiler = (await findCompiler(env))!;
  const git = (await findExecutable("git", pathDirs(env), env))!;
  const source = bundledSource();
  const src = path.join(work, "llama.cpp");
  // Only llama.h and ggml's headers are needed: a clone without checkout (~1 s), then those two folders.
  await exec(git, ["clone", "--quiet", "--no-checkout", source.bundle, src], { env, signal: ctx.signal, label: "git clone" });
  await exec(git, ["-C", src, "checkout", "--quiet", "HEAD", "--", "include", "ggml/include"], { env, signal: ctx.signal, label: "git checkout" });
  const addonApi = path.dirname(createRequire(path.join(nodeLlamaCppDir(), "package.json")).resolve("node-addon-api/package.json"));
  const out = path.join(work, "out");
  mkdirSync(out);
  const mac = process.platform === "darwin";
  const args = [
    "-std=c++17",
    "-O2",
    "-fPIC",
    "-shared",
    // As node-llama-cpp's own addon is built (its CMakeLists), so the classes in its headers match.
    "-DNAPI_VERSION=7",
    "-DNAPI_DISABLE_CPP_EXCEPTIONS",
    `-I${nodeHeaders()!}`,
    `-I${addonApi}`,
    `-I${path.join(src, "include")}`,
    `-I${path.join(src, "ggml", "include")}`,
    `-I${path.join(nodeLlamaCppDir(), "llama", "addon")}`,
    addonSource(),
    "-o",
    path.join(out, ADDON_FILE),
    libllama,
    ...(mac ? ["-undefined", "dynamic_lookup"] : []),
    `-Wl,-rpath,${path.dirname(libllama)}`,
  ];
  emit(ctx.onEvent, { type: "log", level: "debug", message: `${compiler} ${args.join(" ")}` });
  await exec(compiler, args, { env, signal: ctx.signal, label: path.basename(compiler), tailLines: 40 });
  if (!existsSync(path.join(out, ADDON_FILE))) throw new SlmError(`The compiler finished but wrote no ${ADDON_FILE}.`);
}
