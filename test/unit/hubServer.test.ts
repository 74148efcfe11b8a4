import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { createHash, randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { downloadFile, listFiles, modelInfo, type ListFileEntry } from "@huggingface/hub";
import { startHubServer, repoFromDir, type HubServer, type HubRepo } from "../helpers/hubServer.js";

const TOKEN = "hf_testtoken123";

const sha256 = (b: Buffer): string => createHash("sha256").update(b).digest("hex");
const gitSha1 = (b: Buffer): string => createHash("sha1").update(`blob ${b.length}\0`).update(b).digest("hex");

/** Deterministic pseudo-random bytes, so failures reproduce. */
function bytes(n: number, seed = 1): Buffer {
  const out = Buffer.alloc(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

/** Buffer.equals, because toEqual walks large buffers byte by byte (seconds for a few hundred kB). */
function expectSameBytes(actual: Buffer, expected: Buffer): void {
  expect(actual.length).toBe(expected.length);
  expect(actual.equals(expected)).toBe(true);
}

async function collect(it: AsyncIterable<ListFileEntry>): Promise<ListFileEntry[]> {
  const out: ListFileEntry[] = [];
  for await (const e of it) out.push(e);
  return out;
}

/** A raw HTTP GET: unlike fetch, it sends the path as is (no "." / ".." normalisation). */
function rawGet(url: string, path: string): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = request({ host: u.hostname, port: u.port, path, method: "GET" }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

/** Reads a body until it ends or the connection drops; returns what arrived and whether it dropped. */
async function readUntilDrop(res: Response): Promise<{ data: Buffer; dropped: boolean }> {
  const reader = res.body!.getReader();
  const chunks: Buffer[] = [];
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return { data: Buffer.concat(chunks), dropped: false };
      chunks.push(Buffer.from(value));
    }
  } catch {
    return { data: Buffer.concat(chunks), dropped: true };
  }
}

const weights = bytes(200_000, 7);
const config = Buffer.from('{"model_type":"llama"}\n');
const readme = Buffer.from("# tiny\n");

const tinyRepo: HubRepo = {
  id: "acme/tiny",
  files: [
    { path: "config.json", data: config },
    { path: "README.md", data: readme },
    { path: "tiny-Q4_K_M.gguf", data: weights },
    { path: "sub/dir/tokenizer.json", data: Buffer.from("{}") },
  ],
  branches: { dev: "d".repeat(40), "refs/pr/1": "e".repeat(40) },
};

describe("hubServer: metadata", () => {
  let hub: HubServer;
  beforeAll(async () => {
    hub = await startHubServer({
      repos: [
        tinyRepo,
        { id: "acme/gated", gated: true, files: [{ path: "a.gguf", data: bytes(1000) }] },
        { id: "acme/many", files: Array.from({ length: 120 }, (_, i) => ({ path: `shards/part-${String(i).padStart(3, "0")}.bin`, data: Buffer.from(`#${i}`) })) },
      ],
      tokens: [TOKEN],
    });
  });
  afterAll(() => hub.close());

  it("answers modelInfo like the Hub, with only the expanded fields", async () => {
    const info = await modelInfo({ name: "acme/tiny", hubUrl: hub.url, additionalFields: ["sha", "filePaths"] });
    expect(info.name).toBe("acme/tiny");
    expect(info.id).toMatch(/^[0-9a-f]{24}$/);
    expect(info.gated).toBe(false);
    expect(info.private).toBe(false);
    expect(info.task).toBe("text-generation");
    expect(info.updatedAt.getTime()).not.toBeNaN();
    expect((info as { sha?: string }).sha).toBe(hub.commitOf("acme/tiny"));
    expect((info as { filePaths?: string[] }).filePaths).toEqual(tinyRepo.files.map((f) => f.path));

    // Without expand=sha the Hub leaves sha out: clients must ask for it.
    const res = await fetch(`${hub.url}/api/models/acme/tiny/revision/main?expand=pipeline_tag`);
    expect(await res.json()).toEqual({ _id: info.id, id: "acme/tiny", pipeline_tag: "text-generation" });
  });

  it("resolves HEAD, main, branches (URL-encoded or not) and full commits", async () => {
    const main = hub.commitOf("acme/tiny");
    expect(main).toMatch(/^[0-9a-f]{40}$/);
    expect(hub.commitOf("acme/tiny", "HEAD")).toBe(main);
    expect(hub.commitOf("acme/tiny", "dev")).toBe("d".repeat(40));
    const full = (await (await fetch(`${hub.url}/api/models/acme/tiny`)).json()) as { sha: string; siblings: { rfilename: string }[]; gated: unknown };
    expect(full.sha).toBe(main);
    expect(full.gated).toBe(false);
    expect(full.siblings.map((s) => s.rfilename)).toContain("sub/dir/tokenizer.json");
    for (const rev of ["HEAD", "main", "ma%69n"]) {
      const j = (await (await fetch(`${hub.url}/api/models/acme/tiny/revision/${rev}`)).json()) as { sha: string };
      expect(j.sha).toBe(main);
    }
    const dev = (await (await fetch(`${hub.url}/api/models/acme/tiny/revision/dev`)).json()) as { sha: string };
    expect(dev.sha).toBe("d".repeat(40));
    const byCommit = (await (await fetch(`${hub.url}/api/models/acme/tiny/revision/${main}`)).json()) as { sha: string };
    expect(byCommit.sha).toBe(main);
    const info = await modelInfo({ name: "acme/tiny", hubUrl: hub.url, revision: "dev", additionalFields: ["sha"] });
    expect((info as { sha?: string }).sha).toBe("d".repeat(40));
  });

  it("derives the commit deterministically from the repo id and the content", async () => {
    const again = await startHubServer({ repos: [tinyRepo, { ...tinyRepo, id: "acme/other" }, { ...tinyRepo, id: "acme/changed", files: [{ path: "config.json", data: Buffer.from("{}") }] }] });
    try {
      expect(again.commitOf("acme/tiny")).toBe(hub.commitOf("acme/tiny"));
      expect(again.commitOf("acme/other")).not.toBe(hub.commitOf("acme/tiny"));
      expect(again.commitOf("acme/changed")).not.toBe(again.commitOf("acme/other"));
    } finally {
      await again.close();
    }
    const fixed = await startHubServer({ repos: [{ ...tinyRepo, commit: "a".repeat(40), branches: undefined }] });
    try {
      expect(fixed.commitOf("acme/tiny")).toBe("a".repeat(40));
    } finally {
      await fixed.close();
    }
  });

  it("lists files recursively with git and LFS hashes", async () => {
    const entries = await collect(listFiles({ repo: { type: "model", name: "acme/tiny" }, hubUrl: hub.url, recursive: true }));
    expect(entries.map((e) => `${e.type}:${e.path}`)).toEqual([
      "file:README.md",
      "file:config.json",
      "directory:sub",
      "directory:sub/dir",
      "file:sub/dir/tokenizer.json",
      "file:tiny-Q4_K_M.gguf",
    ]);
    const byPath = new Map(entries.map((e) => [e.path, e]));
    const cfg = byPath.get("config.json")!;
    expect(cfg.oid).toBe(gitSha1(config));
    expect(cfg.size).toBe(config.length);
    expect(cfg.lfs).toBeUndefined();
    const gguf = byPath.get("tiny-Q4_K_M.gguf")!;
    expect(gguf.size).toBe(weights.length);
    expect(gguf.lfs?.oid).toBe(sha256(weights));
    expect(gguf.lfs?.oid).toBe(hub.fileSha256("acme/tiny", "tiny-Q4_K_M.gguf"));
    expect(gguf.lfs?.size).toBe(weights.length);
    // As on the real Hub, an LFS file's oid is the git blob sha1 of its pointer, not of its content.
    const pointer = Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256(weights)}\nsize ${weights.length}\n`);
    expect(gguf.oid).toBe(gitSha1(pointer));
    expect(gguf.lfs?.pointerSize).toBe(pointer.length);
    expect(byPath.get("sub")!.size).toBe(0);
    expect(byPath.get("sub")!.oid).toMatch(/^[0-9a-f]{40}$/);
  });

  it("lists one level without recursive, and a sub-folder by path", async () => {
    const top = await collect(listFiles({ repo: { type: "model", name: "acme/tiny" }, hubUrl: hub.url }));
    expect(top.map((e) => e.path)).toEqual(["README.md", "config.json", "sub", "tiny-Q4_K_M.gguf"]);
    const sub = await collect(listFiles({ repo: { type: "model", name: "acme/tiny" }, hubUrl: hub.url, path: "sub" }));
    expect(sub.map((e) => `${e.type}:${e.path}`)).toEqual(["directory:sub/dir"]);
    const deep = await collect(listFiles({ repo: { type: "model", name: "acme/tiny" }, hubUrl: hub.url, path: "sub", recursive: true, revision: "dev" }));
    expect(deep.map((e) => e.path)).toEqual(["sub/dir", "sub/dir/tokenizer.json"]);
    // listFiles does not encode the revision: "refs/pr/1" arrives as three path segments.
    const pr = await collect(listFiles({ repo: { type: "model", name: "acme/tiny" }, hubUrl: hub.url, path: "sub/dir", revision: "refs/pr/1", expand: true }));
    expect(pr.map((e) => [e.path, e.lastCommit?.id])).toEqual([["sub/dir/tokenizer.json", "e".repeat(40)]]);
    const missing = await fetch(`${hub.url}/api/models/acme/tiny/tree/main/nope`);
    expect(missing.status).toBe(404);
    expect(missing.headers.get("x-error-code")).toBe("EntryNotFound");
  });

  it("adds lastCommit with expand=true", async () => {
    const [first] = (await (await fetch(`${hub.url}/api/models/acme/tiny/tree/main?recursive=false&expand=true`)).json()) as { lastCommit?: { id: string } }[];
    expect(first!.lastCommit?.id).toBe(hub.commitOf("acme/tiny"));
  });

  it("paginates trees longer than 50 entries with a Link header", async () => {
    const res = await fetch(`${hub.url}/api/models/acme/many/tree/main?recursive=true&expand=false`);
    const page1 = (await res.json()) as unknown[];
    expect(page1).toHaveLength(50);
    const link = res.headers.get("link")!;
    expect(link).toMatch(/^<http:\/\/127\.0\.0\.1:\d+\/api\/models\/acme\/many\/tree\/main\?.*cursor=.*>; rel="next"$/);
    expect(link).toContain("recursive=true");

    const before = hub.requests.length;
    const all = await collect(listFiles({ repo: { type: "model", name: "acme/many" }, hubUrl: hub.url, recursive: true }));
    expect(all).toHaveLength(121); // the "shards" folder and 120 files
    expect(new Set(all.map((e) => e.path)).size).toBe(121);
    expect(all[0]!.path).toBe("shards");
    expect(all[120]!.path).toBe("shards/part-119.bin");
    expect(hub.requests.slice(before).filter((r) => r.path === "/api/models/acme/many/tree/main")).toHaveLength(3);
  });

  it("answers paths-info (used by downloadFileToCacheDir)", async () => {
    const res = await fetch(`${hub.url}/api/models/acme/tiny/paths-info/main`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ paths: ["tiny-Q4_K_M.gguf", "missing.txt", "sub"], expand: true }),
    });
    const items = (await res.json()) as { path: string; type: string; lfs?: { oid: string }; lastCommit?: { id: string } }[];
    expect(items.map((i) => `${i.type}:${i.path}`)).toEqual(["file:tiny-Q4_K_M.gguf", "directory:sub"]);
    expect(items[0]!.lfs?.oid).toBe(sha256(weights));
    expect(items[0]!.lastCommit?.id).toBe(hub.commitOf("acme/tiny"));
  });

  it("answers errors with the Hub's codes", async () => {
    const repo = await fetch(`${hub.url}/api/models/acme/nope/revision/main`);
    expect(repo.status).toBe(404);
    expect(repo.headers.get("x-error-code")).toBe("RepoNotFound");
    expect(await repo.json()).toEqual({ error: "Repository not found" });

    const rev = await fetch(`${hub.url}/api/models/acme/tiny/revision/nope`);
    expect(rev.status).toBe(404);
    expect(rev.headers.get("x-error-code")).toBe("RevisionNotFound");
    expect(((await rev.json()) as { error: string }).error).toBe("Invalid rev id: nope");

    const treeRev = await fetch(`${hub.url}/api/models/acme/tiny/tree/nope?recursive=true`);
    expect(treeRev.headers.get("x-error-code")).toBe("RevisionNotFound");

    const file = await fetch(`${hub.url}/acme/tiny/resolve/main/nope.bin`);
    expect(file.status).toBe(404);
    expect(file.headers.get("x-error-code")).toBe("EntryNotFound");
    expect(file.headers.get("content-type")).toMatch(/^application\/json/);

    const fileRev = await fetch(`${hub.url}/acme/tiny/resolve/nope/config.json`);
    expect(fileRev.headers.get("x-error-code")).toBe("RevisionNotFound");

    await expect(modelInfo({ name: "acme/nope", hubUrl: hub.url })).rejects.toMatchObject({ statusCode: 404, message: expect.stringContaining("Repository not found") });
  });

  it("guards gated repos and never records tokens", async () => {
    for (const url of [`${hub.url}/api/models/acme/gated`, `${hub.url}/api/models/acme/gated/tree/main`, `${hub.url}/acme/gated/resolve/main/a.gguf`]) {
      const anon = await fetch(url, { redirect: "manual" });
      expect(anon.status).toBe(401);
      expect(anon.headers.get("x-error-code")).toBe("GatedRepo");
      expect(((await anon.json()) as { error: string }).error).toMatch(/restricted/);
      for (const bad of ["hf_unknown", "nothf_token"]) {
        const wrong = await fetch(url, { headers: { Authorization: `Bearer ${bad}` }, redirect: "manual" });
        expect(wrong.status).toBe(401);
        await wrong.body?.cancel();
      }
      const ok = await fetch(url, { headers: { Authorization: `Bearer ${TOKEN}` }, redirect: "manual" });
      expect([200, 302]).toContain(ok.status);
      await ok.body?.cancel();
    }
    // A bad token is refused on public repos too, as on the Hub.
    expect((await fetch(`${hub.url}/api/models/acme/tiny`, { headers: { Authorization: "Bearer hf_wrong" } })).status).toBe(401);

    const info = await modelInfo({ name: "acme/gated", hubUrl: hub.url, accessToken: TOKEN });
    expect(info.gated).toBe("manual");
    await expect(modelInfo({ name: "acme/gated", hubUrl: hub.url })).rejects.toMatchObject({ statusCode: 401 });
    const files = await collect(listFiles({ repo: { type: "model", name: "acme/gated" }, hubUrl: hub.url, accessToken: TOKEN }));
    expect(files.map((f) => f.path)).toEqual(["a.gguf"]);

    expect(hub.requests.some((r) => r.auth === true)).toBe(true);
    expect(hub.requests.some((r) => r.auth === undefined)).toBe(true);
    expect(JSON.stringify(hub.requests)).not.toContain("testtoken");
  });
});

describe("hubServer: file bodies", () => {
  let hub: HubServer;
  beforeAll(async () => {
    hub = await startHubServer({ repos: [tinyRepo] });
  });
  afterAll(() => hub.close());

  it("serves non-LFS files directly with the git sha1 ETag", async () => {
    const res = await fetch(`${hub.url}/acme/tiny/resolve/main/config.json`, { redirect: "manual" });
    expect(res.status).toBe(200);
    expect(res.headers.get("etag")).toBe(`"${gitSha1(config)}"`);
    expect(res.headers.get("x-repo-commit")).toBe(hub.commitOf("acme/tiny"));
    expect(res.headers.get("accept-ranges")).toBe("bytes");
    expect(res.headers.get("content-length")).toBe(String(config.length));
    expect(res.headers.get("x-linked-etag")).toBeNull();
    expect(Buffer.from(await res.arrayBuffer())).toEqual(config);
  });

  it("redirects LFS files to the CDN path, with linked etag and size", async () => {
    const head = await fetch(`${hub.url}/acme/tiny/resolve/main/tiny-Q4_K_M.gguf`, { method: "HEAD", redirect: "manual" });
    expect(head.status).toBe(302);
    expect(head.headers.get("x-linked-etag")).toBe(`"${sha256(weights)}"`);
    expect(head.headers.get("etag")).toBe(`"${sha256(weights)}"`);
    expect(head.headers.get("x-linked-size")).toBe(String(weights.length));
    expect(head.headers.get("x-repo-commit")).toBe(hub.commitOf("acme/tiny"));
    const location = new URL(head.headers.get("location")!, hub.url);
    expect(location.pathname).toBe(`/cdn/${sha256(weights)}`);

    const before = hub.requests.length;
    const res = await fetch(`${hub.url}/acme/tiny/resolve/dev/tiny-Q4_K_M.gguf`);
    expect(res.status).toBe(200);
    expect(res.url).toContain("/cdn/");
    expect(res.headers.get("content-length")).toBe(String(weights.length));
    expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(sha256(weights));
    expect(hub.requests.slice(before).map((r) => r.path)).toEqual(["/acme/tiny/resolve/dev/tiny-Q4_K_M.gguf", `/cdn/${sha256(weights)}`]);
  });

  it("serves ranges with 206 and Content-Range, 416 when unsatisfiable", async () => {
    const url = `${hub.url}/acme/tiny/resolve/main/tiny-Q4_K_M.gguf`;
    const mid = await fetch(url, { headers: { Range: "bytes=100-199" } });
    expect(mid.status).toBe(206);
    expect(mid.headers.get("content-range")).toBe(`bytes 100-199/${weights.length}`);
    expect(Buffer.from(await mid.arrayBuffer())).toEqual(weights.subarray(100, 200));

    const tail = await fetch(url, { headers: { Range: "bytes=199990-" } });
    expect(tail.status).toBe(206);
    expect(tail.headers.get("content-length")).toBe("10");
    expect(Buffer.from(await tail.arrayBuffer())).toEqual(weights.subarray(199_990));

    const past = await fetch(url, { headers: { Range: `bytes=${weights.length}-` } });
    expect(past.status).toBe(416);
    expect(past.headers.get("content-range")).toBe(`bytes */${weights.length}`);

    const small = await fetch(`${hub.url}/acme/tiny/resolve/main/config.json`, { headers: { Range: "bytes=0-0" } });
    expect(small.status).toBe(206);
    expect(small.headers.get("content-range")).toBe(`bytes 0-0/${config.length}`);
    expect(Buffer.from(await small.arrayBuffer())).toEqual(config.subarray(0, 1));
    expect(hub.requests.some((r) => r.range === "bytes=0-0")).toBe(true);
  });

  it("serves LFS files directly when redirectLfs is false", async () => {
    const direct = await startHubServer({ repos: [tinyRepo], redirectLfs: false });
    try {
      const res = await fetch(`${direct.url}/acme/tiny/resolve/main/tiny-Q4_K_M.gguf`, { redirect: "manual" });
      expect(res.status).toBe(200);
      expect(res.headers.get("x-linked-size")).toBe(String(weights.length));
      expectSameBytes(Buffer.from(await res.arrayBuffer()), weights);
    } finally {
      await direct.close();
    }
  });

  it("works with @huggingface/hub's downloadFile (Range probe, then the CDN URL)", async () => {
    const blob = await downloadFile({ repo: { type: "model", name: "acme/tiny" }, path: "tiny-Q4_K_M.gguf", hubUrl: hub.url });
    expect(blob?.size).toBe(weights.length);
    expectSameBytes(Buffer.from(await blob!.arrayBuffer()), weights);
    const missing = await downloadFile({ repo: { type: "model", name: "acme/tiny" }, path: "nope.bin", hubUrl: hub.url });
    expect(missing).toBeNull(); // it recognises X-Error-Code: EntryNotFound
  });

  it("serves the LFS pointer on raw/", async () => {
    const res = await fetch(`${hub.url}/acme/tiny/raw/main/tiny-Q4_K_M.gguf`);
    expect((await res.text()).split("\n")[1]).toBe(`oid sha256:${sha256(weights)}`);
  });
});

describe("hubServer: hostile names", () => {
  it("lists and serves file names as given", async () => {
    const evil = Buffer.from("evil");
    const hub = await startHubServer({
      repos: [{ id: "evil/repo", files: [{ path: "../evil.gguf", data: evil }, { path: "/abs.gguf", data: evil }, { path: "ok.txt", data: evil }] }],
    });
    try {
      const info = await modelInfo({ name: "evil/repo", hubUrl: hub.url, additionalFields: ["filePaths"] });
      expect((info as { filePaths?: string[] }).filePaths).toEqual(["../evil.gguf", "/abs.gguf", "ok.txt"]);
      const files = await collect(listFiles({ repo: { type: "model", name: "evil/repo" }, hubUrl: hub.url, recursive: true }));
      expect(files.filter((f) => f.type === "file").map((f) => f.path).sort()).toEqual(["../evil.gguf", "/abs.gguf", "ok.txt"]);

      const dotdot = await rawGet(hub.url, "/evil/repo/resolve/main/../evil.gguf");
      expect(dotdot.status).toBe(302);
      const abs = await rawGet(hub.url, "/evil/repo/resolve/main//abs.gguf");
      expect(abs.status).toBe(302);
      const encoded = await fetch(`${hub.url}/evil/repo/resolve/main/${encodeURIComponent("../evil.gguf")}`);
      expect(Buffer.from(await encoded.arrayBuffer())).toEqual(evil);
    } finally {
      await hub.close();
    }
  });
});

describe("hubServer: failure knobs", () => {
  it("corrupts bytes of matching files, same length", async () => {
    const hub = await startHubServer({ repos: [tinyRepo], corrupt: (p) => p.endsWith(".gguf") });
    try {
      const bad = Buffer.from(await (await fetch(`${hub.url}/acme/tiny/resolve/main/tiny-Q4_K_M.gguf`)).arrayBuffer());
      expect(bad.length).toBe(weights.length);
      expect(sha256(bad)).not.toBe(hub.fileSha256("acme/tiny", "tiny-Q4_K_M.gguf"));
      expect(bad.subarray(0, 16)).toEqual(weights.subarray(0, 16));
      // The same bytes are flipped whichever ranges the client asks for.
      const half = weights.length / 2;
      const pieces = await Promise.all(
        [`bytes=0-${half - 1}`, `bytes=${half}-`].map(async (r) => Buffer.from(await (await fetch(`${hub.url}/acme/tiny/resolve/main/tiny-Q4_K_M.gguf`, { headers: { Range: r } })).arrayBuffer())),
      );
      expectSameBytes(Buffer.concat(pieces), bad);
      const good = Buffer.from(await (await fetch(`${hub.url}/acme/tiny/resolve/main/config.json`)).arrayBuffer());
      expect(good).toEqual(config);
    } finally {
      await hub.close();
    }
  });

  it("fails the first N file-body requests", async () => {
    const hub = await startHubServer({ repos: [tinyRepo], failFirst: { status: 503, times: 2 } });
    try {
      const url = `${hub.url}/acme/tiny/resolve/main/tiny-Q4_K_M.gguf`;
      // Metadata and HEAD are not file bodies.
      expect((await fetch(`${hub.url}/api/models/acme/tiny`)).status).toBe(200);
      expect((await fetch(url, { method: "HEAD" })).status).toBe(200);
      expect((await fetch(url)).status).toBe(503);
      expect((await fetch(`${hub.url}/acme/tiny/resolve/main/config.json`)).status).toBe(503);
      const ok = await fetch(url);
      expect(ok.status).toBe(200);
      expectSameBytes(Buffer.from(await ok.arrayBuffer()), weights);
    } finally {
      await hub.close();
    }
  });

  it("drops each file's first long body after N bytes, once", async () => {
    const hub = await startHubServer({ repos: [tinyRepo], dropAfterBytes: 70_000 });
    try {
      const url = `${hub.url}/acme/tiny/resolve/main/tiny-Q4_K_M.gguf`;
      // A 1-byte probe is shorter than the cut, so it does not use the drop up.
      expect((await fetch(url, { headers: { Range: "bytes=0-0" } })).status).toBe(206);
      const first = await readUntilDrop(await fetch(url));
      expect(first.dropped).toBe(true);
      expect(first.data.length).toBe(70_000);
      expectSameBytes(first.data, weights.subarray(0, 70_000));
      const rest = await fetch(url, { headers: { Range: `bytes=${first.data.length}-` } });
      expect(rest.status).toBe(206);
      const second = await readUntilDrop(rest);
      expect(second.dropped).toBe(false);
      expectSameBytes(Buffer.concat([first.data, second.data]), weights);
      // Small files are never cut.
      expect(Buffer.from(await (await fetch(`${hub.url}/acme/tiny/resolve/main/config.json`)).arrayBuffer())).toEqual(config);
    } finally {
      await hub.close();
    }
  });

  it("throttles file bodies, and close() ends in-flight downloads", async () => {
    const hub = await startHubServer({ repos: [tinyRepo], throttleBytesPerSec: 400_000 });
    const url = `${hub.url}/acme/tiny/resolve/main/tiny-Q4_K_M.gguf`;
    // Only a lower bound: at 400 kB/s, 100 kB cannot arrive in much under 250 ms.
    const t0 = Date.now();
    const part = await fetch(url, { headers: { Range: "bytes=0-99999" } });
    expectSameBytes(Buffer.from(await part.arrayBuffer()), weights.subarray(0, 100_000));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(200);

    const slow = await fetch(url);
    const reading = readUntilDrop(slow);
    await new Promise((r) => setTimeout(r, 100));
    await hub.close();
    const { dropped, data } = await reading;
    expect(dropped).toBe(true);
    expect(data.length).toBeLessThan(weights.length);
  });
});

describe("hubServer: repoFromDir", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "hubserver-"));
    mkdirSync(join(dir, "nested/deeper"), { recursive: true });
    writeFileSync(join(dir, "config.json"), '{"a":1}\n');
    writeFileSync(join(dir, "nested/notes.txt"), "hello\n");
    writeFileSync(join(dir, "nested/deeper/x.txt"), "x\n");
    writeFileSync(join(dir, "big.bin"), randomBytes(3 * 1024 * 1024 + 17));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("serves every file under a folder from disk, with prefix", async () => {
    const repo = repoFromDir("local/dir", dir);
    expect(repo.files.map((f) => f.path)).toEqual(["big.bin", "config.json", "nested/deeper/x.txt", "nested/notes.txt"]);
    expect(repoFromDir("local/dir", dir, "sub").files[0]!.path).toBe("sub/big.bin");

    const hub = await startHubServer({ repos: [repo] });
    try {
      const entries = await collect(listFiles({ repo: { type: "model", name: "local/dir" }, hubUrl: hub.url, recursive: true }));
      const big = entries.find((e) => e.path === "big.bin")!;
      expect(big.lfs?.size).toBe(3 * 1024 * 1024 + 17); // LFS because it is over 1 MiB
      const res = await fetch(`${hub.url}/local/dir/resolve/main/big.bin`);
      const body = Buffer.from(await res.arrayBuffer());
      expect(sha256(body)).toBe(hub.fileSha256("local/dir", "big.bin"));
      const range = await fetch(`${hub.url}/local/dir/resolve/main/big.bin`, { headers: { Range: "bytes=1048570-1048579" } });
      expect(Buffer.from(await range.arrayBuffer())).toEqual(body.subarray(1_048_570, 1_048_580));
    } finally {
      await hub.close();
    }
  });

  it("gives folders and files the oids git gives them", async () => {
    let git = true;
    try {
      execFileSync("git", ["--version"], { stdio: "ignore" });
    } catch {
      git = false;
    }
    if (!git) return; // the oids are still checked against plain sha1 above
    const repo = repoFromDir("local/git", dir);
    repo.files = repo.files.filter((f) => f.path !== "big.bin"); // git would store the content, not an LFS pointer
    const gitDir = mkdtempSync(join(tmpdir(), "hubserver-git-"));
    try {
      const work = { cwd: dir, env: { ...process.env, GIT_DIR: gitDir, GIT_WORK_TREE: dir } };
      execFileSync("git", ["init", "-q"], work);
      execFileSync("git", ["add", "config.json", "nested"], work);
      const lsTree = execFileSync("git", ["ls-tree", "-r", "-t", execFileSync("git", ["write-tree"], work).toString().trim()], work).toString();
      const expected = lsTree.trim().split("\n").map((line) => {
        const [meta, path] = line.split("\t");
        return `${meta!.split(" ")[2]} ${path}`;
      });
      const hub = await startHubServer({ repos: [repo] });
      try {
        const entries = await collect(listFiles({ repo: { type: "model", name: "local/git" }, hubUrl: hub.url, recursive: true }));
        expect(entries.map((e) => `${e.oid} ${e.path}`)).toEqual(expected);
      } finally {
        await hub.close();
      }
    } finally {
      rmSync(gitDir, { recursive: true, force: true });
    }
  });
});
