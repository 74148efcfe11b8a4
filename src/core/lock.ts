import { createHash } from "node:crypto";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { slmPaths } from "./paths.js";

/**
 * Cross-process mutual exclusion for one key (a registry file, a blob being downloaded). Locks are
 * directories under $SLM_HOME/locks that proper-lockfile keeps fresh; one left by a killed process goes
 * stale after `staleMs` and is taken over, so kill -9 never wedges the next `slm`.
 */
export async function withLock<T>(key: string, fn: () => Promise<T>, opts: { onWait?: () => void; staleMs?: number } = {}): Promise<T> {
  const dir = slmPaths().locks;
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, createHash("sha256").update(key).digest("hex").slice(0, 32));
  const stale = opts.staleMs ?? 10_000;
  const { default: lockfile } = await import("proper-lockfile");
  let release: (() => Promise<void>) | undefined;
  try {
    release = await lockfile.lock(file, { realpath: false, stale, update: stale / 2 });
  } catch (err) {
    if ((err as { code?: string }).code !== "ELOCKED") throw err;
    opts.onWait?.();
    release = await lockfile.lock(file, { realpath: false, stale, update: stale / 2, retries: { retries: 100_000, minTimeout: 100, maxTimeout: 500, factor: 1.2 } });
  }
  try {
    return await fn();
  } finally {
    await release().catch(() => undefined);
  }
}
