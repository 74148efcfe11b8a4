import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

/**
 * Unwritable and full places for storage tests. Tests run as root, which ignores file modes, so a
 * read-only place is a read-only bind mount and a full disk a small tmpfs. Mounting needs root (or
 * CAP_SYS_ADMIN); where it is not allowed, `mountSkipReason` says why and the tests skip with it.
 */
function probeMount(): string | undefined {
  if (process.platform !== "linux") return "mount --bind and tmpfs are Linux-only";
  const dir = mkdtempSync(path.join(tmpdir(), "slm-mount-probe-"));
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir], { stdio: "pipe" });
    execFileSync("umount", [dir], { stdio: "pipe" });
    return undefined;
  } catch (err) {
    return `mounting is not permitted here (${(err as Error).message.split("\n")[0]}); run as root to test read-only and full disks`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const mountSkipReason = probeMount();

export interface Mounted {
  /** The mount point: read-only or small, as asked. */
  dir: string;
  /** For a read-only mount: the writable folder behind it, to prepare files the test then sees read-only. */
  source?: string;
  unmount(): void;
}

function mounted(dir: string, source?: string): Mounted {
  return {
    dir,
    source,
    unmount() {
      execFileSync("umount", [dir], { stdio: "pipe" });
      rmSync(dir, { recursive: true, force: true });
      if (source) rmSync(source, { recursive: true, force: true });
    },
  };
}

/** A read-only view of a fresh folder (`source`, still writable by the test). */
export function readOnlyMount(): Mounted {
  const source = mkdtempSync(path.join(tmpdir(), "slm-ro-src-"));
  const dir = mkdtempSync(path.join(tmpdir(), "slm-ro-"));
  execFileSync("mount", ["--bind", source, dir], { stdio: "pipe" });
  execFileSync("mount", ["-o", "remount,ro,bind", dir], { stdio: "pipe" });
  return mounted(dir, source);
}

/** A tmpfs of `bytes`: a disk that fills up quickly. */
export function smallDisk(bytes: number): Mounted {
  const dir = mkdtempSync(path.join(tmpdir(), "slm-small-"));
  execFileSync("mount", ["-t", "tmpfs", "-o", `size=${bytes}`, "tmpfs", dir], { stdio: "pipe" });
  return mounted(dir);
}
