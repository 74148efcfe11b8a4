import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Where things live, read from the environment on each call so tests can point a process anywhere.
 * The HF variables follow huggingface_hub's rules so Python tools and slm share one cache.
 */
export interface SlmPaths {
  home: string;
  registry: string;
  locks: string;
  hfHome: string;
  hubCache: string;
}

export function slmPaths(env: NodeJS.ProcessEnv = process.env): SlmPaths {
  const home = path.resolve(env.SLM_HOME || path.join(homedir(), ".slm"));
  const xdgCache = env.XDG_CACHE_HOME || path.join(homedir(), ".cache");
  const hfHome = path.resolve(env.HF_HOME || path.join(xdgCache, "huggingface"));
  const hubCache = path.resolve(env.HF_HUB_CACHE || env.HUGGINGFACE_HUB_CACHE || path.join(hfHome, "hub"));
  return { home, registry: path.join(home, "registry.json"), locks: path.join(home, "locks"), hfHome, hubCache };
}

export function hubEndpoint(env: NodeJS.ProcessEnv = process.env): string {
  return (env.HF_ENDPOINT || "https://huggingface.co").replace(/\/+$/, "");
}

/** HF_TOKEN, else the token file that `huggingface-cli login` writes. Never printed anywhere. */
export function hubToken(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const fromEnv = env.HF_TOKEN || env.HUGGING_FACE_HUB_TOKEN;
  if (fromEnv) return fromEnv.trim();
  const file = env.HF_TOKEN_PATH || path.join(slmPaths(env).hfHome, "token");
  if (existsSync(file)) {
    const token = readFileSync(file, "utf8").trim();
    if (token) return token;
  }
  return undefined;
}

export function isTruthyEnv(value: string | undefined): boolean {
  return value !== undefined && ["1", "on", "yes", "true"].includes(value.trim().toLowerCase());
}

export function hubOffline(env: NodeJS.ProcessEnv = process.env): boolean {
  return isTruthyEnv(env.HF_HUB_OFFLINE);
}

/** The installed package's root (where catalog/ and models/ ship), from dist/core/paths.js. */
export function packageRoot(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
}
