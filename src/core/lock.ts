import { createHash } from "node:crypto";
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { slmPaths } from "./paths.js";

/**
 * Cross-process mutual exclusion for one key (a registry file, a blob being downloaded). Locks are
 * directories under $SLM_HOME/locks that proper-lockfile keeps fresh; one left by a killed process goes
 * stale after `staleMs` and is taken over, so kill -9 never wedges the next `slm`.
 */
export async function withLock<T>(key: string, fn: () => Promise<T>, opts: { onWait?: () => void; staleMs?: number; dir?: string } = {}): Promise<T> {
  // `dir`: for what is shared beyond one $SLM_HOME (a cache that SLM_NATIVE_DIR points several at).
  const dir = opts.dir ?? slmPaths().locks;
  mkdirSync(dir, { recursive: true });
  const file = opts.dir ? path.join(opts.dir, path.basename(lockFileOf(key))) : lockFileOf(key);
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

const lockFileOf = (key: string) => path.join(slmPaths().locks, createHash("sha256").update(key).digest("hex").slice(0, 32));

/**
 * Takes the lock for `key` for a long job (a fine-tune run) and keeps it fresh until `release()`;
 * undefined when another live process holds it. A laptop that sleeps past `staleMs` only loses the
 * lock's exclusivity: the job goes on (proper-lockfile would otherwise throw from a timer).
 */
export async function tryHoldLock(key: string, staleMs = 10_000): Promise<(() => Promise<void>) | undefined> {
  mkdirSync(slmPaths().locks, { recursive: true });
  const { default: lockfile } = await import("proper-lockfile");
  try {
    const release = await lockfile.lock(lockFileOf(key), { realpath: false, stale: staleMs, update: staleMs / 2, onCompromised: () => undefined });
    return () => release().catch(() => undefined);
  } catch (err) {
    if ((err as { code?: string }).code === "ELOCKED") return undefined;
    throw err;
  }
}

/** Whether a live process holds the lock for `key` (withLock or tryHoldLock); a killed holder's lock is stale after `staleMs`. */
export async function isLockHeld(key: string, staleMs = 10_000): Promise<boolean> {
  const file = lockFileOf(key);
  if (!existsSync(`${file}.lock`)) return false;
  const { default: lockfile } = await import("proper-lockfile");
  return lockfile.check(file, { realpath: false, stale: staleMs });
}
