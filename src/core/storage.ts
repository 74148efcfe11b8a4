import { accessSync, constants, statSync, statfsSync } from "node:fs";
import path from "node:path";
import { StorageError, UsageError } from "./errors.js";
import { formatBytes } from "./format.js";
import { slmPaths } from "./paths.js";

/**
 * The one place that turns "the file system said no" into a StorageError that names the path and what
 * to do. Every command benefits through src/cli.ts, which maps any errno error it is handed; backends
 * use the same functions where they can check before long work (free space before a download) or
 * must keep going (eval prints its scores, then reports that storing them failed).
 */

export type Unwritable = { reason: "read-only" | "permission" | "not-a-folder" | "full"; at: string };

/** Each reason as the end of a sentence that starts with the place (`/x is on a read-only file system`). */
export const UNWRITABLE_REASON: Record<Unwritable["reason"], string> = {
  "read-only": "is on a read-only file system",
  permission: "is not writable by this user",
  "not-a-folder": "is a file, not a folder",
  full: "is on a full disk",
};

/**
 * Why nothing can be created at `target` (a folder, existing or not yet), or undefined when it can.
 * Probes without writing: the nearest existing ancestor must be a folder, writable (access(2) reports a
 * read-only mount even to root) and have free blocks.
 */
export function unwritableReason(target: string): Unwritable | undefined {
  let dir = path.resolve(target);
  for (;;) {
    try {
      if (!statSync(dir).isDirectory()) return { reason: "not-a-folder", at: dir };
      break;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EACCES" || code === "EPERM") return { reason: "permission", at: dir };
      const parent = path.dirname(dir);
      // ENOENT: not created yet; ENOTDIR: a file further up, which the walk reaches next.
      if ((code !== "ENOENT" && code !== "ENOTDIR") || parent === dir) return undefined;
      dir = parent;
    }
  }
  try {
    accessSync(dir, constants.W_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EROFS") return { reason: "read-only", at: dir };
    if (code === "EACCES" || code === "EPERM") return { reason: "permission", at: dir };
  }
  try {
    if (statfsSync(dir).bavail === 0) return { reason: "full", at: dir };
  } catch {
    // statfs is not available everywhere; the write itself will tell.
  }
  return undefined;
}

function isFolder(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** Free bytes where `target` lives, or will live once created, measured at its nearest existing folder. */
export function freeSpace(target: string): { dir: string; free: number } | undefined {
  let dir = path.resolve(target);
  for (;;) {
    try {
      const s = statfsSync(dir);
      return { dir, free: s.bavail * s.bsize };
    } catch (err) {
      const parent = path.dirname(dir);
      if ((err as NodeJS.ErrnoException).code !== "ENOENT" || parent === dir) return undefined;
      dir = parent;
    }
  }
}

/** Refuses up front when the disk holding `target` has less than `needed` bytes free. */
export function ensureFreeSpace(target: string, needed: number, what: string): void {
  const room = freeSpace(target);
  if (!room || room.free >= needed) return;
  const setting = settingFor(target);
  throw new StorageError(`Not enough free space for ${what}: it needs ${formatBytes(needed)} and the disk holding ${room.dir} has ${formatBytes(room.free)} free.`, target, {
    hint: `Free at least ${formatBytes(needed - room.free)} on that disk${setting ? `, or point ${setting} at a larger one` : ""}, then run the same command again.`,
  });
}

/** The environment variable that moves `p`, when it lies under one of slm's places. */
function settingFor(p: string): string | undefined {
  const { home, hubCache, hfHome } = slmPaths();
  const places: [string, string][] = [
    [hubCache, "HF_HUB_CACHE"],
    [hfHome, "HF_HOME"],
    [home, "SLM_HOME"],
  ];
  const abs = path.resolve(p);
  // The most specific place first: the hub cache usually lies inside HF_HOME.
  const hit = places.filter(([dir]) => abs === dir || abs.startsWith(dir + path.sep)).sort((a, b) => b[0].length - a[0].length)[0];
  return hit ? `${hit[1]} (now ${hit[0]})` : undefined;
}

function errorFor(p: string, u: Unwritable | { reason: "quota" }, cause: unknown): StorageError {
  const setting = settingFor(p);
  const elsewhere = setting ? `point ${setting} at a folder you can write to` : "choose a place you can write to";
  const at = "at" in u ? u.at : p;
  switch (u.reason) {
    case "full":
      return new StorageError(`The disk is full: could not write ${p}.`, p, { cause, hint: `Free some space on the disk holding ${at}${setting ? `, or point ${setting} at a larger disk` : ""}, then run the same command again.` });
    case "quota":
      return new StorageError(`Disk quota exceeded: could not write ${p}.`, p, { cause, hint: `Free some of your quota${setting ? `, or point ${setting} at another disk` : ""}, then run the same command again.` });
    case "read-only":
      return new StorageError(`Cannot write to ${p}: ${at === p ? "it is" : `${at} is`} on a read-only file system.`, p, { cause, hint: `Remount it read-write, or ${elsewhere}.` });
    case "permission":
      return new StorageError(`Permission denied for ${p}${at === p ? "" : ` (at ${at})`}.`, p, { cause, hint: `Give your user access to ${at}, or ${elsewhere}.` });
    case "not-a-folder":
      return new StorageError(`Cannot create ${p}: ${at} is a file, not a folder.`, p, { cause, hint: `Move ${at} out of the way, or ${elsewhere}.` });
  }
}

/** Whether an error (or one of its causes) is a full disk or an exhausted quota. */
export function isDiskFull(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOSPC" || code === "EDQUOT") return true;
  }
  return false;
}

/** slm's two places with their free space ("SLM_HOME /x: 1.2 GB free; …") and the one with least room. */
function placesRoom(): { status: string; fullest: { name: string; dir: string } } {
  const { home, hubCache } = slmPaths();
  const places = [
    { name: "SLM_HOME", dir: home },
    { name: "HF_HUB_CACHE", dir: hubCache },
  ].map((p) => ({ ...p, free: freeSpace(p.dir)?.free }));
  const status = places.map((p) => `${p.name} ${p.dir}: ${p.free === undefined ? "free space unknown" : `${formatBytes(p.free)} free`}`).join("; ");
  const fullest = [...places].sort((a, b) => (a.free ?? Infinity) - (b.free ?? Infinity))[0]!;
  return { status, fullest };
}

/** A full disk or quota met by a write that names no path: measure slm's places instead. */
function fullSomewhere(code: string, cause: unknown): StorageError {
  const { status, fullest } = placesRoom();
  const what = code === "EDQUOT" ? "Disk quota exceeded" : "The disk is full";
  return new StorageError(`${what}: a write failed (${status}).`, fullest.dir, {
    cause,
    hint: `Free some space on the disk holding ${fullest.dir}, or point ${fullest.name} at a larger disk, then run the same command again.`,
  });
}

/**
 * A hint for an external tool (llama-quantize, pip, a converter) whose output says it could not write:
 * its exit code stays the tool's, but the user learns it is their disk and where slm writes.
 */
export function toolStorageHint(output: string): string | undefined {
  const full = /No space left on device|Disk quota exceeded/i.test(output);
  const readOnly = /Read-only file system/i.test(output);
  if (!full && !readOnly) return undefined;
  const { status, fullest } = placesRoom();
  return full
    ? `The disk it writes to is full (${status}): free some space, or point ${fullest.name} at a larger disk, then run the same command again.`
    : `It tried to write to a read-only file system: point SLM_HOME (now ${slmPaths().home}) or the output at a folder you can write to.`;
}

/** Reasons that lie in a path the user gave, not in the disk: a usage matter (exit 2). */
const PATH_REASONS: Record<string, string> = {
  ENOENT: "its folder does not exist",
  ENOTDIR: "a part of its path is a file, not a folder",
  EISDIR: "it is a folder",
};

/**
 * The error for a file the user named (`/save`, `--report`) that slm could not write. Atomic writers
 * (write-file-atomic) fail on their temporary file (`<file>.<random>`), which nobody asked for: the
 * error names `file`. A bad path is the user's to fix (exit 2); a read-only, unwritable or full disk is
 * a StorageError (exit 8); anything else passes through unchanged.
 */
export function fileWriteError(file: string, err: unknown): unknown {
  const e = err as NodeJS.ErrnoException;
  const reason = e?.code ? PATH_REASONS[e.code] : undefined;
  if (reason) return new UsageError(`Cannot write ${file}: ${reason}.`, { hint: "Give a path in a folder that exists and that you can write to.", cause: err });
  if (e instanceof Error && typeof e.path === "string" && e.path.startsWith(`${file}.`)) e.path = file;
  return storageErrorOf(err) ?? err;
}

const CREATING = new Set(["mkdir", "mkdtemp", "open", "rename", "symlink", "link", "copyfile"]);

/**
 * The StorageError an error stands for, or undefined when it is not a storage failure. Looks through
 * `cause`. ENOENT, ENOTDIR and EEXIST are ambiguous (Node's recursive mkdir reports a read-only parent
 * as ENOENT; EEXIST is a file where a folder should be), so the path is probed to find the real reason.
 */
export function storageErrorOf(err: unknown): StorageError | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof StorageError) return e;
    const { code, syscall } = e as NodeJS.ErrnoException;
    // mkdtemp reports its template (…-XXXXXX): the folder it was making it in is what the user needs.
    const p = syscall === "mkdtemp" && (e as NodeJS.ErrnoException).path ? path.dirname((e as NodeJS.ErrnoException).path!) : (e as NodeJS.ErrnoException).path;
    // Writes through a file descriptor fail without a path: say which of slm's disks are full.
    if (!p && (code === "ENOSPC" || code === "EDQUOT")) return fullSomewhere(code, e);
    if (!code || !p) continue;
    switch (code) {
      case "ENOSPC":
        return errorFor(p, { reason: "full", at: p }, e);
      case "EDQUOT":
        return errorFor(p, { reason: "quota" }, e);
      case "EROFS":
      case "EACCES":
      case "EPERM":
        // Probe the folder itself, or the folder a file was being written in.
        return errorFor(p, unwritableReason(isFolder(p) ? p : path.dirname(p)) ?? { reason: code === "EROFS" ? "read-only" : "permission", at: p }, e);
      case "ENOTDIR":
      case "EEXIST":
      case "ENOENT": {
        // Only where slm was creating something: reading a path given by the user is a not-found matter.
        if (code === "ENOTDIR" ? !CREATING.has(syscall ?? "") : syscall !== "mkdir") continue;
        const why = unwritableReason(p);
        if (why) return errorFor(p, why, e);
      }
    }
  }
  return undefined;
}
