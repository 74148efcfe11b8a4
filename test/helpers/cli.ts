import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { execa, type Options, type ResultPromise } from "execa";
import type { ModelEntry, Registry } from "../../src/backends/store/types.js";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const BIN = path.join(ROOT, "bin", "slm.js");
export const FIXTURE = path.join(ROOT, "test", "fixtures", "tiny-arith");

/** A fresh SLM_HOME and HF cache for one test, pointed at a local Hub. */
export interface Sandbox {
  home: string;
  hubCache: string;
  env: Record<string, string>;
}

export function sandbox(endpoint?: string, extra: Record<string, string> = {}): Sandbox {
  const root = mkdtempSync(path.join(tmpdir(), "slm-test-"));
  const home = path.join(root, "slm-home");
  const hubCache = path.join(root, "hf", "hub");
  const env: Record<string, string> = {
    SLM_HOME: home,
    HF_HOME: path.join(root, "hf"),
    HF_HUB_CACHE: hubCache,
    CI: "1",
    NO_COLOR: "1",
    HF_TOKEN: "",
    HF_HUB_OFFLINE: "",
    // Two test files run at once on a 2-core machine: one thread each keeps inference from
    // oversubscribing the CPU, which slows llama.cpp down by orders of magnitude (DESIGN §3).
    SLM_THREADS: "1",
    ...(endpoint ? { HF_ENDPOINT: endpoint } : {}),
    ...extra,
  };
  return { home, hubCache, env };
}

/** Runs the built CLI; never throws on a non-zero exit (tests check exitCode). */
export function slm(args: string[], sb: Sandbox, opts: Options = {}): ResultPromise<{ reject: false; all: true }> {
  return execa("node", [BIN, ...args], { env: { ...sb.env }, extendEnv: true, reject: false, all: true, ...opts }) as unknown as ResultPromise<{ reject: false; all: true }>;
}

/**
 * Sends one Ctrl+C (SIGINT) once the child's stdout so far matches `when`; returns whether it was sent.
 * Once only: a second Ctrl+C means "leave now" to slm, and later events often match again.
 */
export function interruptWhen(child: ResultPromise<{ reject: false; all: true }>, when: RegExp): () => boolean {
  let seen = "";
  let sent = false;
  child.stdout!.on("data", (d: Buffer) => {
    seen += d.toString();
    if (!sent && when.test(seen)) {
      sent = true;
      child.kill("SIGINT");
    }
  });
  return () => sent;
}

/** The last NDJSON line of a --json run. */
export function lastJson(stdout: string): { type: string; data?: unknown; error?: { message: string; exitCode: number; hint?: string } } {
  const lines = stdout.trim().split("\n").filter(Boolean);
  return JSON.parse(lines[lines.length - 1]!);
}

/** The sandbox's registry as slm wrote it (an empty one before the first registration). */
export function registry(box: Sandbox): Registry {
  const file = path.join(box.home, "registry.json");
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as Registry) : { version: 1, models: {} };
}

/** Everything under $SLM_HOME/models: finished models and any work folder a run left. */
export function modelDirs(box: Sandbox): string[] {
  const dir = path.join(box.home, "models");
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

/** Registers models the way pull/quantize/finetune would leave them, straight into the sandbox's registry. */
export function register(sb: Sandbox, entries: Pick<ModelEntry, "name" | "path" | "adapters">[]): void {
  mkdirSync(sb.home, { recursive: true });
  const file = path.join(sb.home, "registry.json");
  const reg: Registry = existsSync(file) ? JSON.parse(readFileSync(file, "utf8")) : { version: 1, models: {} };
  for (const e of entries) {
    const size = statSync(e.path).size;
    reg.models[e.name] = { ...e, format: "gguf", files: [{ path: e.path, size }], source: { type: "derived" }, size, architecture: "llama", lineage: [], createdAt: new Date().toISOString() };
  }
  writeFileSync(file, JSON.stringify(reg, null, 2));
}
