import { existsSync, readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { MissingDependencyError } from "../../core/errors.js";
import { findExecutable, pathDirs, probe } from "../../core/exec.js";
import { slmPaths } from "../../core/paths.js";
import { bundledRelease } from "./source.js";

/** The llama.cpp programs slm uses; `slm setup llama.cpp` builds all of them. */
export const LLAMA_CPP_TOOLS = ["llama-quantize", "llama-imatrix", "llama-perplexity", "llama-bench", "llama-export-lora"] as const;
export type LlamaCppTool = (typeof LLAMA_CPP_TOOLS)[number];

export type GpuVariant = "cpu" | "cuda" | "vulkan";
export const SETUP_COMMAND = "slm setup llama.cpp";

/** What `slm setup llama.cpp` writes next to the tools it built. */
export interface BuildManifest {
  release: string;
  variant: GpuVariant;
  commit?: string;
  /** The first line of `llama-imatrix --version`, e.g. "version: 1 (80fb11a)". */
  version?: string;
  builtAt: string;
  seconds: number;
  jobs: number;
  cmakeArgs: string[];
  tools: string[];
}

export type ToolOrigin = "SLM_LLAMA_CPP_DIR" | "PATH" | "slm";

export interface SearchDir {
  dir: string;
  origin: ToolOrigin;
}

/** $SLM_HOME/llama.cpp: where `slm setup llama.cpp` installs, one folder per release and variant. */
export function installRoot(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(slmPaths(env).home, "llama.cpp");
}

export function installDir(release: string, variant: GpuVariant, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(installRoot(env), variant === "cpu" ? release : `${release}-${variant}`);
}

/**
 * Where tools are looked for, in order. SLM_LLAMA_CPP_DIR wins because setting it is an explicit choice;
 * then PATH; then slm's own builds: the release node-llama-cpp ships (GPU variants first, since whoever
 * built one wants it used), then other releases built earlier, then the flat layout of older slm versions.
 */
export function toolSearchDirs(env: NodeJS.ProcessEnv = process.env, release = safeRelease()): SearchDir[] {
  const dirs: SearchDir[] = [];
  const explicit = env.SLM_LLAMA_CPP_DIR ? path.resolve(env.SLM_LLAMA_CPP_DIR) : undefined;
  if (explicit) for (const d of [explicit, path.join(explicit, "bin"), path.join(explicit, "build", "bin")]) dirs.push({ dir: d, origin: "SLM_LLAMA_CPP_DIR" });
  for (const d of pathDirs(env)) dirs.push({ dir: d, origin: "PATH" });
  const root = installRoot(env);
  const current = (["cuda", "vulkan", "cpu"] as const).map((v) => path.basename(installDir(release, v, env)));
  let others: string[] = [];
  try {
    others = readdirSync(root)
      .filter((n) => !n.startsWith(".") && !current.includes(n) && existsSync(path.join(root, n, "build.json")))
      .sort()
      .reverse();
  } catch {
    // No builds yet.
  }
  for (const n of [...current, ...others]) dirs.push({ dir: path.join(root, n, "bin"), origin: "slm" });
  dirs.push({ dir: path.join(root, "bin"), origin: "slm" }, { dir: path.join(root, "build", "bin"), origin: "slm" });
  return dirs;
}

function safeRelease(): string {
  try {
    return bundledRelease();
  } catch {
    // Without node-llama-cpp there is no release to prefer; the other folders are still searched.
    return "unknown";
  }
}

export interface FoundTool {
  name: LlamaCppTool;
  path?: string;
  origin?: ToolOrigin;
}

export async function findTools(names: readonly LlamaCppTool[] = LLAMA_CPP_TOOLS, env: NodeJS.ProcessEnv = process.env): Promise<FoundTool[]> {
  const dirs = toolSearchDirs(env);
  return Promise.all(
    names.map(async (name) => {
      for (const d of dirs) {
        const file = await findExecutable(name, [d.dir], env);
        if (file) return { name, path: file, origin: d.origin };
      }
      return { name };
    }),
  );
}

/** The tools' paths, or a MissingDependencyError naming `slm setup llama.cpp`. */
export async function requireTools<T extends LlamaCppTool>(names: readonly T[], env: NodeJS.ProcessEnv = process.env): Promise<Record<T, string>> {
  const found = await findTools(names, env);
  const missing = found.filter((t) => !t.path).map((t) => t.name);
  if (missing.length > 0) throw missingToolsError(missing, env);
  return Object.fromEntries(found.map((t) => [t.name, t.path!])) as Record<T, string>;
}

export function missingToolsError(missing: readonly string[], env: NodeJS.ProcessEnv = process.env): MissingDependencyError {
  const where = env.SLM_LLAMA_CPP_DIR ? `in SLM_LLAMA_CPP_DIR (${env.SLM_LLAMA_CPP_DIR}), on PATH or` : "on PATH or";
  return new MissingDependencyError(`llama.cpp's ${missing.join(", ")} ${missing.length === 1 ? "was" : "were"} not found ${where} in ${installRoot(env)}.`, SETUP_COMMAND, {
    hint: `Run \`${SETUP_COMMAND}\` to build them (about 10 minutes on 2 cores, once), or set SLM_LLAMA_CPP_DIR to a folder with llama.cpp's tools.`,
  });
}

/** The manifest of an slm build, when `toolPath` is one. */
export function manifestFor(toolPath: string): BuildManifest | undefined {
  const file = path.join(path.dirname(path.dirname(toolPath)), "build.json");
  try {
    return JSON.parse(readFileSync(file, "utf8")) as BuildManifest;
  } catch {
    return undefined;
  }
}

/**
 * llama.cpp's `--version` banner, in either of its forms: "version: 0.4.0-dev (build 1, commit 80fb11a)"
 * (newer releases) or "version: 4589 (80fb11a)" (older ones, where the build number was the version).
 */
export function parseVersion(text: string): { line: string; version?: string; build?: string; commit?: string } | undefined {
  const current = /^\s*version:\s*(\S+)\s*\(build (\d+), commit ([0-9a-f]+|unknown)\)/im.exec(text);
  if (current) return { line: current[0].trim(), version: current[1], build: current[2], commit: current[3] === "unknown" ? undefined : current[3] };
  const older = /^\s*(?:version|build):\s*(\d+)\s*\(([0-9a-f]+|unknown)\)/im.exec(text);
  if (older) return { line: older[0].trim(), build: older[1], commit: older[2] === "unknown" ? undefined : older[2] };
  return undefined;
}

/** "llama.cpp 0.4.0-dev (build 1, commit 80fb11a)" or "llama.cpp build 4589 (80fb11a)". */
export function describeVersion(v: NonNullable<ReturnType<typeof parseVersion>>): string {
  return v.version ? `llama.cpp ${v.line.replace(/^version:\s*/, "")}` : `llama.cpp build ${v.build}${v.commit ? ` (${v.commit})` : ""}`;
}

const versionCache = new Map<string, string>();

/**
 * A short version for a tool: "<release> (<commit>)" for slm's builds, the tool's own `--version`
 * banner otherwise. llama-quantize has no --version, so a sibling that speaks llama.cpp's common
 * arguments (llama-imatrix, llama-perplexity) answers for the folder; "unknown" when none does.
 */
export async function toolVersion(toolPath: string, signal?: AbortSignal): Promise<string> {
  const cached = versionCache.get(toolPath);
  if (cached) return cached;
  let version = "unknown";
  const manifest = manifestFor(toolPath);
  if (manifest) {
    version = `llama.cpp ${manifest.release}${manifest.commit ? ` (${manifest.commit})` : ""}${manifest.variant !== "cpu" ? ` ${manifest.variant}` : ""}`;
  } else {
    const dir = path.dirname(toolPath);
    // Siblings first: they know --version; llama-quantize answers it with its usage text.
    const candidates = [...["llama-imatrix", "llama-perplexity", "llama-cli"].map((n) => path.join(dir, n)), toolPath].filter((f, i, a) => a.indexOf(f) === i && existsSync(f));
    for (const file of candidates) {
      const r = await probe(file, ["--version"], { timeoutMs: 10_000, signal, okExitCodes: [0, 1] });
      const v = parseVersion(`${r.stdout}\n${r.stderr}`);
      if (v) {
        version = describeVersion(v);
        break;
      }
    }
  }
  versionCache.set(toolPath, version);
  return version;
}
