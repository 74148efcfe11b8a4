import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, rmdirSync, symlinkSync, lstatSync } from "node:fs";
import path from "node:path";
import writeFileAtomic from "write-file-atomic";

/**
 * The standard Hugging Face cache layout, so Python tools and slm share one copy:
 * models--org--name/{blobs/<etag>, snapshots/<commit>/<path> -> ../../blobs/<etag>, refs/<revision>}.
 * The one place that knows it: the hub downloads into it, the store counts and removes what is in it.
 */
export function repoCacheDir(hubCache: string, repo: string): string {
  return path.join(hubCache, `models--${repo.replace(/\//g, "--")}`);
}

/** The model repositories present in the cache (Hub names cannot contain "--", so the folder name maps back). */
export function cachedRepos(hubCache: string): { repo: string; dir: string }[] {
  let names: string[];
  try {
    names = readdirSync(hubCache);
  } catch {
    return [];
  }
  return names.filter((n) => n.startsWith("models--")).map((n) => ({ repo: n.slice("models--".length).replace(/--/g, "/"), dir: path.join(hubCache, n) }));
}

/**
 * An unfinished download of a blob: its bytes so far, and a small JSON recording which ranges are on
 * disk, beside the blob it will become. `stateTmp` is the temp file slm versions before the atomic state
 * writes could leave behind: counted and discarded with the rest.
 */
export function partialPaths(blob: string): { data: string; state: string; stateTmp: string } {
  return { data: `${blob}.slm-partial`, state: `${blob}.slm-partial.json`, stateTmp: `${blob}.slm-partial.json.tmp` };
}

/** The blobs of a repository that have unfinished downloads (any of their partial files exists). */
export function partialBlobs(repoDir: string): string[] {
  const dir = path.join(repoDir, "blobs");
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const blobs = new Set<string>();
  for (const n of names) {
    const m = /^(.+)\.slm-partial(?:\.json(?:\.tmp)?)?$/.exec(n);
    if (m) blobs.add(path.join(dir, m[1]!));
  }
  return [...blobs];
}

export function blobPath(repoDir: string, etag: string): string {
  return path.join(repoDir, "blobs", etag);
}

export function snapshotDir(repoDir: string, commit: string): string {
  return path.join(repoDir, "snapshots", commit);
}

export function snapshotFile(repoDir: string, commit: string, repoPath: string): string {
  return path.join(snapshotDir(repoDir, commit), ...repoPath.split("/"));
}

export const isCommitHash = (rev: string): boolean => /^[0-9a-f]{40}$/.test(rev);

/** Points the snapshot entry at its blob with a relative link, replacing any old link atomically. */
export function linkSnapshot(repoDir: string, commit: string, repoPath: string, etag: string): string {
  const link = snapshotFile(repoDir, commit, repoPath);
  mkdirSync(path.dirname(link), { recursive: true });
  const target = path.relative(path.dirname(link), blobPath(repoDir, etag));
  const tmp = `${link}.slm-tmp-${process.pid}`;
  rmSync(tmp, { force: true });
  symlinkSync(target, tmp);
  renameSync(tmp, link);
  return link;
}

export function writeRef(repoDir: string, revision: string, commit: string): void {
  if (isCommitHash(revision)) return;
  const file = path.join(repoDir, "refs", ...revision.split("/"));
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileAtomic.sync(file, commit);
}

export function readRef(repoDir: string, revision: string): string | undefined {
  if (isCommitHash(revision)) return existsSync(snapshotDir(repoDir, revision)) ? revision : undefined;
  const file = path.join(repoDir, "refs", ...revision.split("/"));
  return existsSync(file) ? readFileSync(file, "utf8").trim() : undefined;
}

/** Every file path (relative, POSIX) in a snapshot, with the blob name it links to. */
export function listSnapshot(repoDir: string, commit: string): { repoPath: string; etag: string; link: string }[] {
  const root = snapshotDir(repoDir, commit);
  const out: { repoPath: string; etag: string; link: string }[] = [];
  const walk = (dir: string, prefix: string): void => {
    if (!existsSync(dir)) return;
    for (const name of readdirSync(dir)) {
      const full = path.join(dir, name);
      const rel = prefix ? `${prefix}/${name}` : name;
      const st = lstatSync(full);
      if (st.isDirectory()) walk(full, rel);
      else if (st.isSymbolicLink()) out.push({ repoPath: rel, etag: path.basename(readlinkSync(full)), link: full });
    }
  };
  walk(root, "");
  return out;
}

/** Blob names linked from any snapshot of the repo. */
export function blobsInUse(repoDir: string): Set<string> {
  const used = new Set<string>();
  const snaps = path.join(repoDir, "snapshots");
  if (!existsSync(snaps)) return used;
  for (const commit of readdirSync(snaps)) for (const f of listSnapshot(repoDir, commit)) used.add(f.etag);
  return used;
}

/** Removes a snapshot link and the folders it leaves empty, up to the snapshot root. */
export function unlinkSnapshot(repoDir: string, link: string): void {
  rmSync(link, { force: true });
  const stop = path.join(repoDir, "snapshots");
  let dir = path.dirname(link);
  while (dir.startsWith(stop) && dir !== stop) {
    try {
      rmdirSync(dir);
    } catch {
      break;
    }
    dir = path.dirname(dir);
  }
}

/** Removes what a discarded pull left empty; a repository folder with refs or other snapshots stays. */
export function removeEmptyRepoFolders(repoDir: string): void {
  for (const d of [path.join(repoDir, "snapshots"), path.join(repoDir, "blobs"), repoDir]) {
    try {
      rmdirSync(d);
    } catch {
      // not empty
    }
  }
}
