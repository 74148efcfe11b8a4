import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Registry } from "../../src/backends/store/types.js";
import { FIXTURE, type Sandbox, lastJson, sandbox, slm } from "../helpers/cli.js";
import { hubPerTest } from "../helpers/hubPerTest.js";
import { type Mounted, mountSkipReason, readOnlyMount, smallDisk } from "../helpers/mounts.js";

/**
 * Item 3 of issue 10: a read-only SLM_HOME, one under a regular file, and a full disk are the user's to
 * fix, so every command says where and what to do (exit 8, src/core/errors.ts), prints what it already
 * computed, checks free space before a download, and leaves no temp file behind.
 */
const ADD = path.join(FIXTURE, "data", "add-eval.jsonl");
const F32 = path.join(FIXTURE, "gguf", "tiny-arith-f32.gguf");
const F16 = path.join(FIXTURE, "gguf", "tiny-arith-f16.gguf");
const PEFT = path.join(FIXTURE, "lora-sub");
const EXIT_STORAGE = 8;

if (mountSkipReason) console.warn(`storage tests skipped: ${mountSkipReason}`);

/** Every file under `dir`, relative. */
function walk(dir: string, rel = ""): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(path.join(dir, rel), { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(dir, path.join(rel, e.name)) : [path.join(rel, e.name)]));
}

describe.skipIf(mountSkipReason)("a read-only SLM_HOME", () => {
  let ro: Mounted;
  let sb: Sandbox;
  let home: string;
  let before: string;
  beforeAll(() => {
    ro = readOnlyMount();
    // A home with a registered model, prepared through the writable folder behind the mount.
    const src = path.join(ro.source!, "home");
    mkdirSync(path.join(src, "models"), { recursive: true });
    copyFileSync(F32, path.join(src, "models", "mine.gguf"));
    const size = statSync(F32).size;
    const reg: Registry = {
      version: 1,
      models: { mine: { name: "mine", format: "gguf", path: path.join(ro.dir, "home", "models", "mine.gguf"), files: [{ path: path.join(ro.dir, "home", "models", "mine.gguf"), size }], source: { type: "derived" }, size, architecture: "llama", lineage: [], createdAt: new Date().toISOString() } },
    };
    before = JSON.stringify(reg, null, 2);
    writeFileSync(path.join(src, "registry.json"), before);
    home = path.join(ro.dir, "home");
    sb = sandbox(undefined, { SLM_HOME: home });
  });
  afterAll(() => ro?.unmount());

  const expectStorageError = (r: { exitCode?: number; stderr: string; all?: string }, place: string) => {
    expect(r.exitCode, r.all).toBe(EXIT_STORAGE);
    expect(r.stderr).toContain(`${place} is on a read-only file system`);
    expect(r.stderr).toContain(`point SLM_HOME (now ${home}) at a folder you can write to`);
    expect(r.stderr).not.toContain("Unexpected error");
  };

  it("eval prints every score, then says that storing them (and the report) failed (exit 8)", async () => {
    const report = path.join(ro.dir, "report.md");
    const r = await slm(["eval", "tiny-arith", "--task", ADD, "--limit", "5", "--report", report], sb);
    expect(r.exitCode, r.all).toBe(EXIT_STORAGE);
    expect(r.stdout).toMatch(/^tiny-arith\s+100\.0 %/m);
    expect(r.stdout).toContain(`Not saved: storing failed: Cannot write to ${path.join(home, "locks")}: ${home} is on a read-only file system.`);
    // …said before scoring, not only after.
    expect(r.stderr).toContain(`The results cannot be saved: ${home} is on a read-only file system. The scores will still be printed; --no-store skips saving.`);
    expect(r.stderr.indexOf("The results cannot be saved")).toBeLessThan(r.stderr.indexOf("Loading tiny-arith"));
    // The report's error names the report, not write-file-atomic's temp file.
    expect(r.stderr).toContain(`error: Cannot write to ${report}: ${ro.dir} is on a read-only file system.`);
    expect(r.stderr).toContain("hint: Remount it read-write, or choose a place you can write to.");
    expect(r.stderr).not.toContain("Unexpected error");
  }, 120_000);

  it("rm refuses with the path and leaves the registry and the file", async () => {
    const r = await slm(["rm", "mine"], sb);
    expectStorageError(r, home);
    expect(readFileSync(path.join(home, "registry.json"), "utf8")).toBe(before);
    expect(existsSync(path.join(home, "models", "mine.gguf"))).toBe(true);
  });

  it("quantize refuses before running the tool", async () => {
    // A stand-in llama-quantize that logs its calls: a probe (--help) may run, quantizing must not.
    const tools = mkdtempSync(path.join(tmpdir(), "slm-tools-"));
    const stub = path.join(tools, "llama-quantize");
    writeFileSync(stub, `#!/bin/sh\necho "$@" >> "${tools}/calls"\nexit 1\n`);
    chmodSync(stub, 0o755);
    const r = await slm(["quantize", "mine", "--bits", "4"], { ...sb, env: { ...sb.env, SLM_LLAMA_CPP_DIR: tools } });
    expect(r.exitCode, r.all).toBe(EXIT_STORAGE);
    expect(r.stderr).toContain(`point SLM_HOME (now ${home}) at a folder you can write to`);
    expect(r.stderr).toContain(`error: Cannot write to ${path.join(home, "models")}: it is on a read-only file system.`);
    const calls = existsSync(path.join(tools, "calls")) ? readFileSync(path.join(tools, "calls"), "utf8") : "";
    expect(calls).not.toContain(".gguf");
  });

  it("setup python refuses with the path", async () => {
    const r = await slm(["setup", "python"], sb);
    expectStorageError(r, home);
  });

  it("run --lora with a PEFT folder (converted into SLM_HOME) refuses with the path", async () => {
    const r = await slm(["run", "tiny-arith", "12+34", "--lora", PEFT], sb);
    expectStorageError(r, home);
    expect(r.stderr).toContain(`Cannot write to ${path.join(home, "adapters")}`);
  });

  it("an SLM_HOME not created yet under a read-only mount is named the same way", async () => {
    const fresh = path.join(ro.dir, "new-home");
    const r = await slm(["setup", "python"], { ...sb, env: { ...sb.env, SLM_HOME: fresh } });
    expect(r.exitCode, r.all).toBe(EXIT_STORAGE);
    expect(r.stderr).toContain(`Cannot write to ${fresh}: ${ro.dir} is on a read-only file system.`);
  });

  it("doctor reports SLM_HOME as a problem, not ✓", async () => {
    const r = await slm(["doctor", "--json"], sb);
    expect(r.exitCode, r.all).toBe(0);
    const checks = (lastJson(r.stdout).data as { sections: { storage: { name: string; status: string; detail: string; fix?: string }[] } }).sections.storage;
    expect(checks.find((c) => c.name === "SLM_HOME")).toEqual({ name: "SLM_HOME", status: "error", detail: `${home} — cannot write: it is on a read-only file system`, fix: "point SLM_HOME at a folder you can write to" });
  }, 60_000);
});

describe.skipIf(mountSkipReason)("a full SLM_HOME", () => {
  let full: Mounted;
  beforeAll(() => {
    full = smallDisk(64 << 10);
    try {
      writeFileSync(path.join(full.dir, "filler"), Buffer.alloc(128 << 10));
    } catch {
      // ENOSPC: full, as wanted.
    }
  });
  afterAll(() => full?.unmount());

  it("eval prints its scores, then says the disk is full (exit 8), leaving no temp file", async () => {
    const home = path.join(full.dir, "home");
    const r = await slm(["eval", "tiny-arith", "--task", ADD, "--limit", "5"], sandbox(undefined, { SLM_HOME: home }));
    expect(r.exitCode, r.all).toBe(EXIT_STORAGE);
    expect(r.stdout).toMatch(/^tiny-arith\s+100\.0 %/m);
    expect(r.stderr).toContain(`The results cannot be saved: ${full.dir} is on a full disk.`);
    expect(r.stderr).toContain(`error: The disk is full: a write failed (SLM_HOME ${home}: 0 B free;`);
    expect(r.stderr).toContain(`hint: Free some space on the disk holding ${home}, or point SLM_HOME at a larger disk`);
    expect(walk(full.dir)).toEqual(["filler"]);
  }, 120_000);
});

describe("SLM_HOME or the HF cache under a regular file", () => {
  const root = mkdtempSync(path.join(tmpdir(), "slm-under-file-"));
  const file = path.join(root, "a-file");
  writeFileSync(file, "not a folder");
  const sb = sandbox(undefined, { SLM_HOME: path.join(file, "slm"), HF_HUB_CACHE: path.join(file, "hub") });

  it("eval --json: the result line with the scores, then the error line that names the file in the way (exit 8)", async () => {
    const r = await slm(["eval", "tiny-arith", "--task", ADD, "--limit", "5", "--json"], sb);
    expect(r.exitCode, r.all).toBe(EXIT_STORAGE);
    const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { type: string; data?: { models: { tasks: unknown[]; stored: boolean }[] }; error?: { name: string; message: string; exitCode: number } });
    const result = lines.find((l) => l.type === "result");
    expect(result?.data?.models[0]).toMatchObject({ stored: false, tasks: [expect.objectContaining({ task: "add-eval" })] });
    expect(lines.at(-1)).toMatchObject({ type: "error", error: { name: "StorageError", exitCode: EXIT_STORAGE, message: expect.stringContaining(`${file} is a file, not a folder.`) } });
  }, 120_000);

  it("doctor marks both places ✗", async () => {
    const r = await slm(["doctor"], sb);
    expect(r.stdout).toMatch(new RegExp(`✗ SLM_HOME\\s+${file}/slm \\(not created yet\\) — cannot write: ${file} is a file, not a folder`));
    expect(r.stdout).toMatch(new RegExp(`✗ HF cache\\s+${file}/hub \\(not created yet\\) — cannot write: ${file} is a file, not a folder`));
  }, 60_000);
});

describe.skipIf(mountSkipReason)("slm pull onto a full disk", () => {
  const REPO = "test/tiny-arith-GGUF";
  const sha = createHash("sha256").update(readFileSync(F16)).digest("hex");
  const hub = hubPerTest({ repos: [{ id: REPO, files: [{ path: "tiny-arith-f16.gguf", file: F16 }] }] });
  const mounts: Mounted[] = [];
  const disk = (bytes: number) => {
    const m = smallDisk(bytes);
    mounts.push(m);
    return m;
  };
  afterEach(async () => {
    for (const m of mounts.splice(0)) m.unmount();
  });
  const leftovers = (dir: string) => walk(dir).filter((f) => /\.tmp|slm-tmp/.test(f));

  it("refuses before downloading, with the space needed and free", async () => {
    const s = await hub();
    const cache = disk(2 << 20);
    const sb = sandbox(s.url, { HF_HUB_CACHE: cache.dir });
    const r = await slm(["pull", `${REPO}:F16`], sb);
    expect(r.exitCode, r.all).toBe(EXIT_STORAGE);
    expect(r.stderr).toMatch(new RegExp(`error: Not enough free space for the download of ${REPO}: it needs 7\\.\\d+ MB and the disk holding ${cache.dir} has 2\\.\\d+ MB free\\.`));
    expect(r.stderr).toMatch(/hint: Free at least 5\.\d+ MB on that disk, or point HF_HUB_CACHE .* at a larger one/);
    expect(s.requests.filter((q) => q.path.includes("/resolve/") || q.path.includes("/cdn/"))).toEqual([]);
    expect(walk(cache.dir)).toEqual([]);
  });

  it("a read-only HF cache: the failed file and the error both say so, nothing is written", async () => {
    const s = await hub();
    const ro = readOnlyMount();
    mounts.push(ro);
    const sb = sandbox(s.url, { HF_HUB_CACHE: path.join(ro.dir, "hub") });
    const r = await slm(["pull", `${REPO}:F16`], sb);
    expect(r.exitCode, r.all).toBe(EXIT_STORAGE);
    expect(r.stderr).toMatch(new RegExp(`✗ tiny-arith-f16\\.gguf \\(Cannot write to ${ro.dir}/hub/models--test--tiny-arith-GGUF/blobs: ${ro.dir} is on a read-only file system\\.\\)`));
    expect(r.stderr).toContain(`hint: Remount it read-write, or point HF_HUB_CACHE (now ${ro.dir}/hub) at a folder you can write to.`);
    expect(r.stderr).not.toMatch(/ENOENT|EROFS/);
    expect(walk(ro.source!)).toEqual([]);
  });

  it("a disk that fills during the download: a clear error, no temp file, and the same pull resumes once there is room", async () => {
    const s = await hub({ throttleBytesPerSec: 2 << 20 });
    const cache = disk(10 << 20);
    const sb = sandbox(s.url, { HF_HUB_CACHE: cache.dir });
    const filler = path.join(cache.dir, "filler");
    const child = slm(["pull", `${REPO}:F16`, "--json"], sb);
    let filled = false;
    let seen = "";
    child.stdout!.on("data", (d: Buffer) => {
      seen += d.toString();
      // Fill the disk once the download is under way (the preflight saw enough room).
      if (!filled && /"type":"progress".*"current":[1-9]\d{5,}/.test(seen)) {
        filled = true;
        try {
          writeFileSync(filler, Buffer.alloc(12 << 20));
        } catch {
          // ENOSPC: the disk is now full, which is the point.
        }
      }
    });
    const r = await child;
    expect(filled, r.all).toBe(true);
    expect(r.exitCode, r.all).toBe(EXIT_STORAGE);
    expect(leftovers(cache.dir)).toEqual([]);
    const err = lastJson(r.stdout).error!;
    expect(err.message).toMatch(/^The disk is full while writing tiny-arith-f16\.gguf \(.* of 6\.64 MB kept to resume\)\.$/);
    expect(err.hint).toContain("run the same `slm pull` to resume");
    const states = walk(cache.dir).filter((f) => f.endsWith(".slm-partial.json"));
    expect(states).toHaveLength(1);
    expect(() => JSON.parse(readFileSync(path.join(cache.dir, states[0]!), "utf8"))).not.toThrow();

    rmSync(filler);
    const again = await slm(["pull", `${REPO}:F16`, "--json"], sb);
    expect(again.exitCode, again.all).toBe(0);
    const blobs = walk(cache.dir).filter((f) => f.includes(`blobs${path.sep}`));
    expect(blobs.map((b) => path.basename(b))).toEqual([sha]);
    expect(createHash("sha256").update(readFileSync(path.join(cache.dir, blobs[0]!))).digest("hex")).toBe(sha);
    expect(leftovers(cache.dir)).toEqual([]);
  }, 60_000);
});
