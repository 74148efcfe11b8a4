import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import writeFileAtomic from "write-file-atomic";
import { slmPaths } from "../../core/paths.js";

/**
 * While a pull is unfinished, the commit it started from is pinned here, so that the next `slm pull`
 * resumes the same files even if the branch has moved on meanwhile. The pin also names the files that
 * pull selected: those it finished are in the cache but in no registry entry yet, and discarding the
 * unfinished pull (`slm rm`) must know which they are.
 */
export interface Pin {
  repo: string;
  revision: string;
  commit: string;
  /** Paths inside the repository; absent in pins written before slm recorded them. */
  files?: string[];
  since: string;
  /** The pin file itself. */
  file: string;
}

function pinsDir(): string {
  return path.join(slmPaths().home, "pending");
}

function pinFile(repo: string, revision: string): string {
  return path.join(pinsDir(), `${repo.replace(/\//g, "--")}@${encodeURIComponent(revision)}.json`);
}

function parsePin(file: string): Pin | undefined {
  try {
    const p = JSON.parse(readFileSync(file, "utf8")) as Partial<Pin>;
    if (typeof p.repo !== "string" || typeof p.revision !== "string" || !p.commit || !/^[0-9a-f]{40}$/.test(p.commit)) return undefined;
    return { repo: p.repo, revision: p.revision, commit: p.commit, files: Array.isArray(p.files) ? p.files.filter((f) => typeof f === "string") : undefined, since: String(p.since ?? ""), file };
  } catch {
    return undefined;
  }
}

export function readPin(repo: string, revision: string): string | undefined {
  const f = pinFile(repo, revision);
  return existsSync(f) ? parsePin(f)?.commit : undefined;
}

/** Pins `commit`; the files of an earlier unfinished pull of the same commit stay named too. */
export function writePin(repo: string, revision: string, commit: string, selected: string[] = []): void {
  const f = pinFile(repo, revision);
  const before = existsSync(f) ? parsePin(f) : undefined;
  const files = [...new Set([...(before?.commit === commit ? (before.files ?? []) : []), ...selected])];
  mkdirSync(path.dirname(f), { recursive: true });
  writeFileAtomic.sync(f, JSON.stringify({ repo, revision, commit, files, since: new Date().toISOString() }));
}

export function clearPin(repo: string, revision: string): void {
  rmSync(pinFile(repo, revision), { force: true });
}

/** Every unfinished pull's pin (unreadable ones are skipped: they pin nothing). */
export function listPins(): Pin[] {
  let names: string[];
  try {
    names = readdirSync(pinsDir());
  } catch {
    return [];
  }
  return names.filter((n) => n.endsWith(".json")).flatMap((n) => parsePin(path.join(pinsDir(), n)) ?? []);
}
