import { mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ensureRoomForPull } from "../../src/backends/hub/preflight.js";
import { partialPaths } from "../../src/backends/store/hfCache.js";
import { EXIT, ExternalError, StorageError } from "../../src/core/errors.js";
import { exec } from "../../src/core/exec.js";
import { storageErrorOf, unwritableReason } from "../../src/core/storage.js";
import { type Mounted, mountSkipReason, readOnlyMount, smallDisk } from "../helpers/mounts.js";

/** The error a real file-system call throws. */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error("expected the call to throw");
}

const savedHome = process.env.SLM_HOME;
afterEach(() => {
  if (savedHome === undefined) delete process.env.SLM_HOME;
  else process.env.SLM_HOME = savedHome;
});

describe("storageErrorOf: a path under a regular file", () => {
  const root = mkdtempSync(path.join(tmpdir(), "slm-storage-"));
  const file = path.join(root, "not-a-folder");
  writeFileSync(file, "x");

  it("ENOTDIR (writing below the file) names the file in the way and SLM_HOME", () => {
    process.env.SLM_HOME = path.join(file, "home");
    const err = storageErrorOf(thrown(() => mkdirSync(path.join(file, "home", "locks"), { recursive: true })));
    expect(err).toBeInstanceOf(StorageError);
    expect(err!.exitCode).toBe(EXIT.storage);
    expect(err!.message).toBe(`Cannot create ${path.join(file, "home", "locks")}: ${file} is a file, not a folder.`);
    expect(err!.hint).toContain(`point SLM_HOME (now ${path.join(file, "home")}) at a folder you can write to`);
  });

  it("EEXIST from mkdir where a folder should be is the same failure", () => {
    const err = storageErrorOf(thrown(() => mkdirSync(file)));
    expect(err?.message).toBe(`Cannot create ${file}: ${file} is a file, not a folder.`);
  });

  it("is not a storage failure when a file simply does not exist", () => {
    expect(storageErrorOf(thrown(() => readFileSync(path.join(root, "missing.jsonl"))))).toBeUndefined();
    expect(storageErrorOf(new Error("plain"))).toBeUndefined();
  });

  it("unwritableReason finds the file in the way", () => {
    expect(unwritableReason(path.join(file, "a", "b"))).toEqual({ reason: "not-a-folder", at: file });
    expect(unwritableReason(path.join(root, "new", "folder"))).toBeUndefined();
  });
});

describe.skipIf(mountSkipReason)("storageErrorOf on real mounts", () => {
  let ro: Mounted;
  let full: Mounted;
  beforeAll(() => {
    ro = readOnlyMount();
    mkdirSync(path.join(ro.source!, "home"));
    full = smallDisk(64 << 10);
  });
  afterAll(() => {
    ro?.unmount();
    full?.unmount();
  });

  it("EROFS writing a file names the read-only place", () => {
    const err = storageErrorOf(thrown(() => writeFileSync(path.join(ro.dir, "home", "registry.json"), "{}")));
    expect(err?.message).toBe(`Cannot write to ${path.join(ro.dir, "home", "registry.json")}: ${path.join(ro.dir, "home")} is on a read-only file system.`);
  });

  it("ENOENT from a recursive mkdir under a read-only mount is read-only, not 'no such file'", () => {
    process.env.SLM_HOME = path.join(ro.dir, "new-home");
    const err = storageErrorOf(thrown(() => mkdirSync(path.join(ro.dir, "new-home", "locks"), { recursive: true })));
    expect(err?.message).toContain(`${ro.dir} is on a read-only file system`);
    expect(err?.hint).toContain("SLM_HOME");
    expect(unwritableReason(path.join(ro.dir, "new-home"))).toEqual({ reason: "read-only", at: ro.dir });
  });

  it("ENOSPC from a write (which names no path) is a full disk, with the free space of slm's places", () => {
    process.env.SLM_HOME = path.join(full.dir, "home");
    const big = Buffer.alloc(256 << 10);
    const err = storageErrorOf(thrown(() => writeFileSync(path.join(full.dir, "big"), big)));
    expect(err).toBeInstanceOf(StorageError);
    expect(err!.message).toMatch(new RegExp(`^The disk is full: a write failed \\(SLM_HOME ${path.join(full.dir, "home")}: 0 B free; HF_HUB_CACHE .*: .* free\\)\\.$`));
    expect(err!.hint).toBe(`Free some space on the disk holding ${path.join(full.dir, "home")}, or point SLM_HOME at a larger disk, then run the same command again.`);
    expect(unwritableReason(full.dir)).toEqual({ reason: "full", at: full.dir });
  });
});

describe.skipIf(mountSkipReason)("ensureRoomForPull", () => {
  let disk: Mounted;
  beforeAll(() => {
    disk = smallDisk(4 << 20);
  });
  afterAll(() => disk?.unmount());

  it("refuses with the numbers when the disk cannot hold the download", () => {
    const blob = path.join(disk.dir, "blobs", "a");
    const err = thrown(() => ensureRoomForPull("acme/big", disk.dir, [{ blob, size: 6 << 20 }]));
    expect(err).toBeInstanceOf(StorageError);
    expect((err as StorageError).message).toMatch(/^Not enough free space for the download of acme\/big: it needs 7\.\d+ MB and the disk holding .* has 4\.\d+ MB free\.$/);
    expect(readdirSync(disk.dir)).toEqual([]);
  });

  it("counts what an unfinished download already holds, and blobs shared by two paths once", () => {
    mkdirSync(path.join(disk.dir, "blobs"), { recursive: true });
    const blob = path.join(disk.dir, "blobs", "b");
    const size = 6 << 20;
    const { data, state } = partialPaths(blob);
    // A sparse partial file: its bytes count as on disk when the state says they were written.
    writeFileSync(data, "");
    writeFileSync(state, JSON.stringify({ version: 1, commit: "c", repoPath: "b.gguf", size, expected: { algo: "sha256", hex: "0" }, spans: [{ start: 0, end: size, written: 4 << 20 }] }));
    expect(() => ensureRoomForPull("acme/big", disk.dir, [{ blob, size }, { blob, size }])).not.toThrow();
  });
});

describe("an external tool that runs out of disk", () => {
  it("keeps its exit code (6) and stderr, with a hint that names the disk and slm's places", async () => {
    process.env.SLM_HOME = path.join(tmpdir(), "slm-home-for-hint");
    const err = await exec("sh", ["-c", "echo 'llama_model_quantize: failed to quantize: write error: No space left on device' >&2; exit 1"]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ExternalError);
    expect((err as ExternalError).exitCode).toBe(EXIT.external);
    expect((err as ExternalError).hint).toMatch(new RegExp(`^The disk it writes to is full \\(SLM_HOME ${process.env.SLM_HOME}: .* free; HF_HUB_CACHE .*\\): free some space`));
    const other = await exec("sh", ["-c", "echo 'bad flag' >&2; exit 1"]).catch((e: unknown) => e);
    expect((other as ExternalError).hint).toBeUndefined();
  });
});
