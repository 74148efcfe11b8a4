import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { MissingDependencyError } from "../../core/errors.js";

/**
 * The llama.cpp source that node-llama-cpp ships: a git bundle of the exact release its native binding
 * was built from. Building the tools from it keeps them in step with the inference engine, and needs
 * no network.
 */
export interface BundledSource {
  /** node-llama-cpp's name for the llama.cpp release (binariesGithubRelease.json), e.g. "b6000" or "v0.4.0". */
  release: string;
  bundle: string;
  packageDir: string;
}

export function nodeLlamaCppDir(): string {
  // Resolved like an import would be, so a hoisted or nested node-llama-cpp is found wherever npm put it.
  const entry = createRequire(import.meta.url).resolve("node-llama-cpp");
  let dir = path.dirname(entry);
  while (!existsSync(path.join(dir, "package.json")) || !isNodeLlamaCpp(path.join(dir, "package.json"))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`cannot find node-llama-cpp's package folder above ${entry}`);
    dir = parent;
  }
  return dir;
}

function isNodeLlamaCpp(pkg: string): boolean {
  try {
    return (JSON.parse(readFileSync(pkg, "utf8")) as { name?: string }).name === "node-llama-cpp";
  } catch {
    return false;
  }
}

export function bundledSource(): BundledSource {
  const packageDir = nodeLlamaCppDir();
  const llamaDir = path.join(packageDir, "llama");
  const bundle = path.join(llamaDir, "gitRelease.bundle");
  if (!existsSync(bundle)) {
    throw new MissingDependencyError(`node-llama-cpp's llama.cpp source (${bundle}) is missing, so the llama.cpp tools cannot be built.`, "npm install", {
      hint: "Reinstall slm's dependencies (npm install), or put llama.cpp's tools on PATH or in SLM_LLAMA_CPP_DIR.",
    });
  }
  return { release: bundledRelease(llamaDir), bundle, packageDir };
}

/** The release tag without reading the bundle; "unknown" when node-llama-cpp does not say. */
export function bundledRelease(llamaDir = path.join(nodeLlamaCppDir(), "llama")): string {
  for (const [file, key] of [["binariesGithubRelease.json", "release"], ["llama.cpp.info.json", "tag"]] as const) {
    try {
      const v = (JSON.parse(readFileSync(path.join(llamaDir, file), "utf8")) as Record<string, unknown>)[key];
      // The tag names a folder under $SLM_HOME: keep it to safe characters.
      if (typeof v === "string" && /^[A-Za-z0-9._-]+$/.test(v)) return v;
    } catch {
      // Try the next file.
    }
  }
  return "unknown";
}
