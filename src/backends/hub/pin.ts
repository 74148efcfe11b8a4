import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import writeFileAtomic from "write-file-atomic";
import { slmPaths } from "../../core/paths.js";

/**
 * While a pull is unfinished, the commit it started from is pinned here, so that the next `slm pull`
 * resumes the same files even if the branch has moved on meanwhile.
 */
function pinFile(repo: string, revision: string): string {
  return path.join(slmPaths().home, "pending", `${repo.replace(/\//g, "--")}@${encodeURIComponent(revision)}.json`);
}

export function readPin(repo: string, revision: string): string | undefined {
  const f = pinFile(repo, revision);
  if (!existsSync(f)) return undefined;
  try {
    const commit = (JSON.parse(readFileSync(f, "utf8")) as { commit?: string }).commit;
    return commit && /^[0-9a-f]{40}$/.test(commit) ? commit : undefined;
  } catch {
    return undefined;
  }
}

export function writePin(repo: string, revision: string, commit: string): void {
  const f = pinFile(repo, revision);
  mkdirSync(path.dirname(f), { recursive: true });
  writeFileAtomic.sync(f, JSON.stringify({ repo, revision, commit, since: new Date().toISOString() }));
}

export function clearPin(repo: string, revision: string): void {
  rmSync(pinFile(repo, revision), { force: true });
}
