import { readdirSync, rmSync } from "node:fs";
import path from "node:path";

/** Whether a process id is alive (EPERM: alive, but someone else's). */
export function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Removes the work folders in `dir` whose names carry the pid of a process that is gone (killed with
 * SIGKILL, or a power cut): `pattern` captures the pid in its first group, e.g. /^\.tmp-(\d+)-/.
 */
export function removeDeadWork(dir: string, pattern: RegExp): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names) {
    const m = pattern.exec(n);
    if (m && !processAlive(Number(m[1]))) rmSync(path.join(dir, n), { recursive: true, force: true });
  }
}
