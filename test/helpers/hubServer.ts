/**
 * A local stand-in for the Hugging Face Hub, for tests and benchmarks.
 *
 * It speaks the subset of the Hub's HTTP API that slm and `@huggingface/hub` use (model info, tree
 * listing, paths-info, resolve/raw with the LFS CDN redirect) with the real Hub's status codes, error
 * headers and hashes, and it can misbehave on purpose (corrupt bytes, throttle, fail, drop connections)
 * so that download code can be tested against the failures it has to survive.
 *
 * Only node:http is used, so it runs anywhere the tests run, without network access.
 */
import { createHash } from "node:crypto";
import { createReadStream, readdirSync, statSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { once } from "node:events";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";

export interface HubFile {
  path: string;
  data?: Buffer;
  /** Serve from disk, for large generated files. */
  file?: string;
  /** Default: true for files > 1 MiB or *.gguf / *.safetensors. */
  lfs?: boolean;
}

export interface HubRepo {
  /** "org/name" */
  id: string;
  files: HubFile[];
  /** Requires `Authorization: Bearer <token>` where token is one of the server's tokens. */
  gated?: boolean;
  /** 40-hex; default derived deterministically from the repo id and the file list. */
  commit?: string;
  /** name -> commit; "main" always exists. */
  branches?: Record<string, string>;
}

export interface HubServerOptions {
  repos: HubRepo[];
  /** Valid tokens for gated repos (they must start with "hf_"). */
  tokens?: string[];
  /** Default true: resolve/ of an LFS file answers 302 to /cdn/<sha256>?..., like the Hub's CDN redirect. */
  redirectLfs?: boolean;
  /** Serve bytes with some bytes flipped (same length) for matching files, to test integrity checks. */
  corrupt?: (path: string) => boolean;
  /** Rate limit on each file body, for kill-halfway tests. */
  throttleBytesPerSec?: number;
  /** The first N file-body requests answer this status (e.g. 503), to test retries. */
  failFirst?: { status: number; times: number };
  /**
   * Each file's first body response longer than this is cut after this many bytes (the connection is
   * destroyed), once per file, to test resuming after a dropped connection.
   */
  dropAfterBytes?: number;
}

export interface HubRequestRecord {
  method: string;
  /** The raw request path, without the query string. */
  path: string;
  /** The Range header, when one was sent. */
  range?: string;
  /** true when an Authorization header was sent (the token itself is never recorded). */
  auth?: boolean;
}

export interface HubServer {
  /** http://127.0.0.1:PORT */
  url: string;
  close(): Promise<void>;
  requests: HubRequestRecord[];
  fileSha256(repoId: string, path: string): string;
  commitOf(repoId: string, revision?: string): string;
}

// ---------------------------------------------------------------------------------------------------
// Repository model

const MiB = 1024 * 1024;
/** Tree listings are paginated with a Link header beyond this many entries (the real Hub pages too). */
const TREE_PAGE_SIZE = 50;
/** Fixed dates keep every answer deterministic. */
const CREATED_AT = "2024-01-01T00:00:00.000Z";
const LAST_MODIFIED = "2024-06-01T12:00:00.000Z";

type Source = { kind: "data"; data: Buffer } | { kind: "file"; file: string };

interface FileEntry {
  path: string;
  size: number;
  sha256: string;
  /** Git blob sha1 of the content: the ETag of a non-LFS file. */
  contentSha1: string;
  lfs: boolean;
  /** What git stores for an LFS file: the pointer text. */
  pointer?: Buffer;
  /** The tree oid: git blob sha1 of what git stores (the pointer for LFS files, as on the real Hub). */
  oid: string;
  source: Source;
}

interface DirEntry {
  path: string;
  files: FileEntry[];
  dirs: Set<string>;
  oid: string;
}

interface RepoState {
  id: string;
  gated: boolean;
  mainCommit: string;
  branches: Map<string, string>;
  commits: Set<string>;
  files: Map<string, FileEntry>;
  dirs: Map<string, DirEntry>;
}

interface TreeItem {
  type: "file" | "directory";
  oid: string;
  size: number;
  path: string;
  lfs?: { oid: string; size: number; pointerSize: number };
  lastCommit?: { id: string; title: string; date: string };
}

const HEX40 = /^[0-9a-f]{40}$/;

function sha1Hex(data: Buffer | string): string {
  return createHash("sha1").update(data).digest("hex");
}

function gitBlobSha1(content: Buffer): string {
  return createHash("sha1").update(`blob ${content.length}\0`).update(content).digest("hex");
}

function lfsPointer(sha256: string, size: number): Buffer {
  return Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256}\nsize ${size}\n`);
}

/** sha256 and git blob sha1 of a file, streamed so that multi-GiB fixtures never sit in memory. */
async function hashFile(file: string): Promise<{ size: number; sha256: string; contentSha1: string }> {
  const size = statSync(file).size;
  const sha256 = createHash("sha256");
  const sha1 = createHash("sha1").update(`blob ${size}\0`);
  let seen = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: MiB }) as AsyncIterable<Buffer>) {
    sha256.update(chunk);
    sha1.update(chunk);
    seen += chunk.length;
  }
  if (seen !== size) throw new Error(`hubServer: ${file} changed while it was hashed`);
  return { size, sha256: sha256.digest("hex"), contentSha1: sha1.digest("hex") };
}

async function loadFile(f: HubFile): Promise<FileEntry> {
  let source: Source;
  let size: number;
  let sha256: string;
  let contentSha1: string;
  if (f.data !== undefined) {
    source = { kind: "data", data: f.data };
    size = f.data.length;
    sha256 = createHash("sha256").update(f.data).digest("hex");
    contentSha1 = gitBlobSha1(f.data);
  } else if (f.file !== undefined) {
    source = { kind: "file", file: f.file };
    ({ size, sha256, contentSha1 } = await hashFile(f.file));
  } else {
    throw new Error(`hubServer: file ${f.path} has neither data nor file`);
  }
  const lfs = f.lfs ?? (size > MiB || /\.(gguf|safetensors)$/i.test(f.path));
  const pointer = lfs ? lfsPointer(sha256, size) : undefined;
  return { path: f.path, size, sha256, contentSha1, lfs, pointer, oid: pointer ? gitBlobSha1(pointer) : contentSha1, source };
}

/**
 * The parent folder of a repo path. Paths are taken as given (hostile names included), so a leading
 * "/" or an empty segment does not create a folder named "": such a file sits at the root.
 */
function parentOf(p: string): string {
  const i = p.lastIndexOf("/");
  return i <= 0 ? "" : p.slice(0, i);
}

function baseName(p: string): string {
  return p.slice(p.lastIndexOf("/") + 1);
}

/** Git's tree entry order: names compare bytewise, a folder as if its name ended with "/". */
function gitOrder(a: { name: string; dir: boolean }, b: { name: string; dir: boolean }): number {
  return Buffer.compare(Buffer.from(a.dir ? `${a.name}/` : a.name), Buffer.from(b.dir ? `${b.name}/` : b.name));
}

function buildDirs(files: FileEntry[]): Map<string, DirEntry> {
  const dirs = new Map<string, DirEntry>();
  const dirAt = (p: string): DirEntry => {
    let d = dirs.get(p);
    if (!d) {
      d = { path: p, files: [], dirs: new Set(), oid: "" };
      dirs.set(p, d);
    }
    return d;
  };
  dirAt("");
  for (const f of files) {
    dirAt(parentOf(f.path)).files.push(f);
    for (let d = parentOf(f.path); d !== ""; d = parentOf(d)) dirAt(parentOf(d)).dirs.add(d);
  }
  // A folder's oid is the git tree hash of its entries, computed bottom-up (longest paths first).
  const byDepth = [...dirs.values()].sort((a, b) => b.path.split("/").length - a.path.split("/").length);
  for (const d of byDepth) {
    const entries = [
      ...d.files.map((f) => ({ name: baseName(f.path), dir: false, mode: "100644", oid: f.oid })),
      ...[...d.dirs].map((p) => ({ name: baseName(p), dir: true, mode: "40000", oid: dirs.get(p)!.oid })),
    ].sort(gitOrder);
    const body = Buffer.concat(entries.map((e) => Buffer.concat([Buffer.from(`${e.mode} ${e.name}\0`), Buffer.from(e.oid, "hex")])));
    d.oid = sha1Hex(Buffer.concat([Buffer.from(`tree ${body.length}\0`), body]));
  }
  return dirs;
}

async function loadRepo(repo: HubRepo): Promise<RepoState> {
  if (!/^[^/]+\/[^/]+$/.test(repo.id)) throw new Error(`hubServer: repo id must be "org/name": ${repo.id}`);
  const entries = await Promise.all(repo.files.map(loadFile));
  const files = new Map<string, FileEntry>();
  for (const e of entries) {
    if (files.has(e.path)) throw new Error(`hubServer: ${repo.id} lists ${e.path} twice`);
    files.set(e.path, e);
  }
  // Deterministic, so that tests and cache directories see the same commit on every run.
  const derived = sha1Hex(`slm-hub-server\0${repo.id}\0${[...files.values()].map((f) => `${f.path}\0${f.sha256}\n`).sort().join("")}`);
  const given = [repo.commit, ...Object.values(repo.branches ?? {})].filter((c): c is string => c !== undefined);
  for (const c of given) if (!HEX40.test(c)) throw new Error(`hubServer: ${repo.id}: commit must be 40 lowercase hex: ${c}`);
  const mainCommit = repo.branches?.main ?? repo.commit ?? derived;
  const branches = new Map(Object.entries({ ...repo.branches, main: mainCommit }));
  const commits = new Set([mainCommit, repo.commit ?? derived, ...branches.values()]);
  return { id: repo.id, gated: repo.gated ?? false, mainCommit, branches, commits, files, dirs: buildDirs(entries) };
}

/** "HEAD" and "main" mean main; otherwise a branch name or a full commit sha. */
function resolveRevision(repo: RepoState, revision: string): string | undefined {
  if (revision === "HEAD") return repo.mainCommit;
  return repo.branches.get(revision) ?? (repo.commits.has(revision) ? revision : undefined);
}

// ---------------------------------------------------------------------------------------------------
// HTTP helpers

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json; charset=utf-8", "Content-Length": Buffer.byteLength(text), ...headers });
  res.end(res.req.method === "HEAD" ? undefined : text);
}

/** Errors the way the Hub sends them: JSON body plus X-Error-Code / X-Error-Message headers. */
function sendError(res: ServerResponse, err: HttpError): void {
  // Header values must be printable ASCII, and messages can quote a client's revision or path.
  const headers: Record<string, string> = { "X-Error-Message": err.message.replace(/[^\x20-\x7e]/g, "?") };
  if (err.code) headers["X-Error-Code"] = err.code;
  sendJson(res, err.status, { error: err.message }, headers);
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** The inclusive byte range a Range header asks for; null when there is none (or one we ignore). */
function parseRange(header: string | undefined, size: number): { start: number; end: number } | null | "unsatisfiable" {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  // Like most servers, a malformed or multi-part range is ignored and the whole body is sent.
  if (!m || (m[1] === "" && m[2] === "")) return null;
  if (m[1] === "") {
    const suffix = Number(m[2]);
    if (suffix === 0 || size === 0) return "unsatisfiable";
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size || end < start) return "unsatisfiable";
  return { start, end };
}

/** Byte offsets flipped by `corrupt`: not the first bytes, so a file's magic still reads right. */
function corruptOffsets(size: number): Set<number> {
  return size === 0 ? new Set() : new Set([Math.floor(size / 2), size - 1]);
}

async function* sliceBuffer(data: Buffer, start: number, end: number): AsyncGenerator<Buffer> {
  for (let off = start; off <= end; off += 64 * 1024) yield data.subarray(off, Math.min(end + 1, off + 64 * 1024));
}

function readSource(source: Source, start: number, end: number): AsyncIterable<Buffer> {
  return source.kind === "data"
    ? sliceBuffer(source.data, start, end)
    : (createReadStream(source.file, { start, end, highWaterMark: MiB }) as AsyncIterable<Buffer>);
}

// ---------------------------------------------------------------------------------------------------
// The server

export async function startHubServer(opts: HubServerOptions): Promise<HubServer> {
  const repos = new Map<string, RepoState>();
  for (const state of await Promise.all(opts.repos.map(loadRepo))) {
    if (repos.has(state.id)) throw new Error(`hubServer: repo ${state.id} given twice`);
    repos.set(state.id, state);
  }
  const tokens = new Set(opts.tokens ?? []);
  for (const t of tokens) if (!t.startsWith("hf_")) throw new Error(`hubServer: tokens must start with "hf_"`);
  const redirectLfs = opts.redirectLfs ?? true;
  const requests: HubRequestRecord[] = [];
  let failuresLeft = opts.failFirst?.times ?? 0;
  const dropped = new Set<string>();
  let baseUrl = "";

  /** Throws 401 for a bad token (the Hub rejects one even on public repos) and for gated repos without access. */
  function checkAccess(req: IncomingMessage, repo: RepoState | undefined): void {
    const header = req.headers.authorization;
    let valid = false;
    if (header !== undefined) {
      const m = /^Bearer\s+(\S+)$/i.exec(header);
      valid = !!m && m[1]!.startsWith("hf_") && tokens.has(m[1]!);
      if (!valid) throw new HttpError(401, "Invalid credentials in Authorization header");
    }
    if (!repo) throw new HttpError(404, "Repository not found", "RepoNotFound");
    if (repo.gated && !valid) {
      throw new HttpError(
        401,
        `Access to model ${repo.id} is restricted. You must have access to it and be authenticated to access it. Please log in.`,
        "GatedRepo",
      );
    }
  }

  function revisionOrThrow(repo: RepoState, revision: string): string {
    const commit = resolveRevision(repo, revision);
    if (!commit) throw new HttpError(404, `Invalid rev id: ${revision}`, "RevisionNotFound");
    return commit;
  }

  function treeItem(repo: RepoState, p: string, commit: string, expand: boolean): TreeItem {
    const lastCommit = expand ? { lastCommit: { id: commit, title: "Upload files", date: LAST_MODIFIED } } : {};
    const f = repo.files.get(p);
    if (f) {
      return {
        type: "file",
        oid: f.oid,
        size: f.size,
        path: f.path,
        ...(f.pointer ? { lfs: { oid: f.sha256, size: f.size, pointerSize: f.pointer.length } } : {}),
        ...lastCommit,
      };
    }
    return { type: "directory", oid: repo.dirs.get(p)!.oid, size: 0, path: p, ...lastCommit };
  }

  /** A folder's entries in git order; recursive listings put each folder's contents right after it. */
  function listDir(repo: RepoState, dirPath: string, recursive: boolean): string[] {
    const dir = repo.dirs.get(dirPath)!;
    const children = [
      ...dir.files.map((f) => ({ name: baseName(f.path), dir: false, path: f.path })),
      ...[...dir.dirs].map((d) => ({ name: baseName(d), dir: true, path: d })),
    ].sort(gitOrder);
    return children.flatMap((c) => (c.dir && recursive ? [c.path, ...listDir(repo, c.path, true)] : [c.path]));
  }

  function modelInfoBody(repo: RepoState, commit: string, query: URLSearchParams): Record<string, unknown> {
    const files = [...repo.files.values()];
    const blobs = query.get("blobs") === "true";
    const full: Record<string, unknown> = {
      _id: sha1Hex(`id\0${repo.id}`).slice(0, 24),
      id: repo.id,
      modelId: repo.id,
      author: repo.id.split("/")[0],
      sha: commit,
      lastModified: LAST_MODIFIED,
      createdAt: CREATED_AT,
      private: false,
      disabled: false,
      gated: repo.gated ? "manual" : false,
      downloads: 0,
      likes: 0,
      tags: files.some((f) => f.path.endsWith(".gguf")) ? ["gguf"] : [],
      pipeline_tag: "text-generation",
      siblings: files.map((f) =>
        blobs
          ? { rfilename: f.path, size: f.size, blobId: f.oid, ...(f.pointer ? { lfs: { sha256: f.sha256, size: f.size, pointerSize: f.pointer.length } } : {}) }
          : { rfilename: f.path },
      ),
      usedStorage: files.reduce((n, f) => n + f.size, 0),
    };
    // With expand=..., the real Hub answers only _id, id and the expanded fields: a client that forgets to
    // ask for `sha` or `siblings` must not get them here either.
    const expand = [...query.getAll("expand"), ...query.getAll("expand[]")];
    if (expand.length === 0) return full;
    return Object.fromEntries(Object.entries(full).filter(([k]) => k === "_id" || k === "id" || expand.includes(k)));
  }

  async function readBody(req: IncomingMessage): Promise<string> {
    const chunks: Buffer[] = [];
    for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
    return Buffer.concat(chunks).toString("utf8");
  }

  async function handleApi(req: IncomingMessage, res: ServerResponse, segments: string[], query: URLSearchParams): Promise<void> {
    // segments: ["api", "models", org, name, ...rest]
    if (segments[1] !== "models" || segments.length < 4) throw new HttpError(404, "Not found");
    const id = `${safeDecode(segments[2]!)}/${safeDecode(segments[3]!)}`;
    const repo = repos.get(id);
    checkAccess(req, repo);
    const r = repo!;
    const rest = segments.slice(4);
    const op = rest[0];

    if (op === undefined || (op === "revision" && rest.length === 2)) {
      if (req.method !== "GET" && req.method !== "HEAD") throw new HttpError(405, "Method not allowed");
      const commit = revisionOrThrow(r, op === undefined ? "main" : safeDecode(rest[1]!));
      sendJson(res, 200, modelInfoBody(r, commit, query));
      return;
    }

    if (op === "tree" && rest.length >= 2) {
      if (req.method !== "GET") throw new HttpError(405, "Method not allowed");
      // @huggingface/hub does not encode the revision here, so "refs/pr/1" may span several segments:
      // take the longest prefix that names a revision, the rest is the folder.
      const parts = rest.slice(1).map(safeDecode);
      let commit: string | undefined;
      let dirParts: string[] = [];
      for (let i = parts.length; i >= 1 && !commit; i--) {
        commit = resolveRevision(r, parts.slice(0, i).join("/"));
        dirParts = parts.slice(i);
      }
      if (!commit) throw new HttpError(404, `Invalid rev id: ${parts[0]}`, "RevisionNotFound");
      const dirPath = dirParts.filter((p) => p !== "").join("/");
      if (!r.dirs.has(dirPath)) throw new HttpError(404, "Entry not found", "EntryNotFound");
      const all = listDir(r, dirPath, query.get("recursive") === "true");
      const offset = Number(query.get("cursor") ? Buffer.from(query.get("cursor")!, "base64url").toString() : "0") || 0;
      const page = all.slice(offset, offset + TREE_PAGE_SIZE);
      const headers: Record<string, string> = {};
      if (offset + TREE_PAGE_SIZE < all.length) {
        const next = new URLSearchParams(query);
        next.set("cursor", Buffer.from(String(offset + TREE_PAGE_SIZE)).toString("base64url"));
        // Absolute, because @huggingface/hub's parseLinkHeader only accepts http(s):// URLs.
        headers.Link = `<${baseUrl}${req.url!.split("?")[0]}?${next.toString()}>; rel="next"`;
      }
      sendJson(res, 200, page.map((p) => treeItem(r, p, commit, query.get("expand") === "true")), headers);
      return;
    }

    if (op === "paths-info" && rest.length === 2) {
      if (req.method !== "POST") throw new HttpError(405, "Method not allowed");
      const commit = revisionOrThrow(r, safeDecode(rest[1]!));
      const text = await readBody(req);
      let paths: string[];
      let expand: boolean;
      // @huggingface/hub posts JSON; huggingface_hub (Python) posts a form.
      if ((req.headers["content-type"] ?? "").includes("application/json")) {
        let body: { paths?: unknown; expand?: unknown };
        try {
          body = JSON.parse(text) as { paths?: unknown; expand?: unknown };
        } catch {
          throw new HttpError(400, "Invalid JSON body");
        }
        paths = Array.isArray(body.paths) ? body.paths.filter((p): p is string => typeof p === "string") : [];
        expand = body.expand === true;
      } else {
        const form = new URLSearchParams(text);
        paths = form.getAll("paths");
        expand = form.get("expand") === "true";
      }
      // Unknown paths are left out, as on the real Hub.
      const found = paths.filter((p) => r.files.has(p) || (p !== "" && r.dirs.has(p)));
      sendJson(res, 200, found.map((p) => treeItem(r, p, commit, expand)));
      return;
    }

    throw new HttpError(404, "Not found");
  }

  /**
   * Sends (part of) a file body, honouring Range, and the failFirst / corrupt / throttle / dropAfterBytes
   * knobs. Headers particular to the endpoint are already set on `res`.
   */
  async function sendFileBody(req: IncomingMessage, res: ServerResponse, repoId: string, f: FileEntry, content: Source, size: number): Promise<void> {
    const isGet = req.method === "GET";
    if (isGet && failuresLeft > 0 && opts.failFirst) {
      failuresLeft--;
      sendError(res, new HttpError(opts.failFirst.status, `Injected failure (${opts.failFirst.status})`));
      return;
    }
    res.setHeader("Accept-Ranges", "bytes");
    res.setHeader("Content-Type", "application/octet-stream");
    const range = parseRange(req.headers.range, size);
    if (range === "unsatisfiable") {
      res.writeHead(416, { "Content-Range": `bytes */${size}`, "Content-Length": 0 });
      res.end();
      return;
    }
    const start = range ? range.start : 0;
    const end = range ? range.end : size - 1;
    const length = end - start + 1;
    if (range) res.setHeader("Content-Range", `bytes ${start}-${end}/${size}`);
    res.writeHead(range ? 206 : 200, { "Content-Length": length });
    if (!isGet || length === 0) {
      res.end();
      return;
    }

    const key = `${repoId}\0${f.path}`;
    let limit = length;
    if (opts.dropAfterBytes !== undefined && !dropped.has(key) && length > opts.dropAfterBytes) {
      dropped.add(key);
      limit = opts.dropAfterBytes;
    }
    // Corruption applies to the content only (not to an LFS pointer sent by raw/).
    const flips = content === f.source && opts.corrupt?.(f.path) ? corruptOffsets(size) : new Set<number>();
    const rate = opts.throttleBytesPerSec;
    // The client may hang up mid-body (or close() may destroy the socket): stop waiting then.
    const aborted = new AbortController();
    res.once("close", () => aborted.abort());

    const source = readSource(content, start, start + limit - 1);
    if (!rate && flips.size === 0 && limit === length) {
      // Nothing to meddle with: let streams do the work, so benchmarks measure the client, not this loop.
      try {
        await pipeline(source, res);
      } catch {
        // The client hung up; nothing to answer.
      }
      return;
    }

    const started = Date.now();
    let sent = 0;
    try {
      for await (const chunk of source) {
        for (let off = 0; off < chunk.length; ) {
          // Throttled bodies go out in small slices so that the rate holds within a chunk too.
          const sliceLen = rate ? Math.min(chunk.length - off, Math.max(1, Math.floor(rate / 20))) : chunk.length - off;
          let slice = chunk.subarray(off, off + sliceLen);
          const at = start + sent;
          if (flips.size > 0 && [...flips].some((o) => o >= at && o < at + slice.length)) {
            slice = Buffer.from(slice); // copy: never alter the caller's buffers
            for (const o of flips) if (o >= at && o < at + slice.length) slice[o - at] ^= 0xff;
          }
          if (rate) {
            const due = started + ((sent + slice.length) / rate) * 1000;
            if (due > Date.now()) await sleep(due - Date.now(), undefined, { signal: aborted.signal });
          }
          if (aborted.signal.aborted) return;
          sent += slice.length;
          off += sliceLen;
          if (sent === limit && limit < length) {
            // Let the last bytes reach the socket before cutting it, so the client gets exactly `limit` bytes.
            await new Promise<void>((resolve) => {
              res.write(slice, () => resolve());
              aborted.signal.addEventListener("abort", () => resolve());
            });
            res.destroy();
            return;
          }
          if (!res.write(slice)) await once(res, "drain", { signal: aborted.signal });
        }
      }
    } catch (err) {
      if (aborted.signal.aborted) return;
      throw err;
    }
    res.end();
  }

  async function handleResolve(req: IncomingMessage, res: ServerResponse, rawPath: string, kind: "resolve" | "raw"): Promise<void> {
    if (req.method !== "GET" && req.method !== "HEAD") throw new HttpError(405, "Method not allowed");
    // rawPath: "org/name/resolve/rev/file..." (file taken verbatim, never normalised)
    const m = /^([^/]+)\/([^/]+)\/(?:resolve|raw)\/([^/]+)\/(.*)$/s.exec(rawPath);
    if (!m) throw new HttpError(404, "Not found");
    const repo = repos.get(`${safeDecode(m[1]!)}/${safeDecode(m[2]!)}`);
    checkAccess(req, repo);
    const r = repo!;
    const commit = revisionOrThrow(r, safeDecode(m[3]!));
    const f = r.files.get(m[4]!) ?? r.files.get(safeDecode(m[4]!));
    if (!f) throw new HttpError(404, "Entry not found", "EntryNotFound");
    res.setHeader("X-Repo-Commit", commit);

    if (kind === "raw" && f.pointer) {
      // raw/ serves what git stores, i.e. the LFS pointer.
      res.setHeader("ETag", `"${f.oid}"`);
      await sendFileBody(req, res, r.id, f, { kind: "data", data: f.pointer }, f.pointer.length);
      return;
    }
    if (!f.lfs) {
      res.setHeader("ETag", `"${f.contentSha1}"`);
      await sendFileBody(req, res, r.id, f, f.source, f.size);
      return;
    }
    res.setHeader("ETag", `"${f.sha256}"`);
    res.setHeader("X-Linked-Etag", `"${f.sha256}"`);
    res.setHeader("X-Linked-Size", String(f.size));
    if (!redirectLfs) {
      await sendFileBody(req, res, r.id, f, f.source, f.size);
      return;
    }
    // Like the Hub's redirect to its CDN: a signed-looking URL that needs no Authorization header.
    const expires = Math.floor(Date.parse(LAST_MODIFIED) / 1000) + 3600;
    const signature = sha1Hex(`sig\0${r.id}\0${f.path}\0${expires}`);
    const location =
      `${baseUrl}/cdn/${f.sha256}?repo=${encodeURIComponent(r.id)}&path=${encodeURIComponent(f.path)}` +
      `&Expires=${expires}&Signature=${signature}`;
    const body = `Found. Redirecting to ${location}`;
    res.writeHead(302, { Location: location, "Content-Type": "text/plain; charset=utf-8", "Content-Length": Buffer.byteLength(body) });
    res.end(req.method === "HEAD" ? undefined : body);
  }

  async function handleCdn(req: IncomingMessage, res: ServerResponse, sha: string, query: URLSearchParams): Promise<void> {
    if (req.method !== "GET" && req.method !== "HEAD") throw new HttpError(405, "Method not allowed");
    const repoId = query.get("repo") ?? "";
    const p = query.get("path") ?? "";
    let found: { repo: RepoState; file: FileEntry } | undefined;
    const named = repos.get(repoId)?.files.get(p);
    if (named && named.sha256 === sha) found = { repo: repos.get(repoId)!, file: named };
    for (const repo of repos.values()) {
      if (found) break;
      for (const file of repo.files.values()) if (file.sha256 === sha && file.lfs) found = { repo, file };
    }
    if (!found) {
      // The CDN is not the Hub: a bare 404, no Hub error headers.
      res.writeHead(404, { "Content-Type": "text/plain", "Content-Length": 9 });
      res.end(req.method === "HEAD" ? undefined : "Not Found");
      return;
    }
    res.setHeader("ETag", `"${sha}"`);
    await sendFileBody(req, res, found.repo.id, found.file, found.file.source, found.file.size);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const rawUrl = req.url ?? "/";
    const q = rawUrl.indexOf("?");
    const rawPath = q < 0 ? rawUrl : rawUrl.slice(0, q);
    const query = new URLSearchParams(q < 0 ? "" : rawUrl.slice(q + 1));
    const record: HubRequestRecord = { method: req.method ?? "GET", path: rawPath };
    if (req.headers.range !== undefined) record.range = req.headers.range;
    if (req.headers.authorization !== undefined) record.auth = true;
    requests.push(record);

    try {
      const trimmed = rawPath.replace(/^\//, "");
      const segments = trimmed.split("/");
      if (segments[0] === "api") await handleApi(req, res, segments, query);
      else if (segments[0] === "cdn" && segments.length === 2) await handleCdn(req, res, segments[1]!, query);
      else if (segments[2] === "resolve" || segments[2] === "raw") await handleResolve(req, res, trimmed, segments[2]);
      else throw new HttpError(404, "Not found");
    } catch (err) {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err instanceof HttpError) sendError(res, err);
      else sendError(res, new HttpError(500, err instanceof Error ? err.message : String(err)));
    }
  }

  const server = createServer((req, res) => {
    void handle(req, res).catch(() => res.destroy());
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  baseUrl = `http://127.0.0.1:${port}`;

  function repoOrThrow(repoId: string): RepoState {
    const r = repos.get(repoId);
    if (!r) throw new Error(`hubServer: unknown repo ${repoId}`);
    return r;
  }

  let closing: Promise<void> | undefined;
  return {
    url: baseUrl,
    requests,
    // Idempotent: a test may close its server early, and the per-test clean-up closes it again.
    close: () =>
      (closing ??= (async () => {
        const closed = new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
        // Keep-alive and throttled connections would otherwise hold close() open.
        server.closeAllConnections();
        await closed;
      })()),
    fileSha256: (repoId, p) => {
      const f = repoOrThrow(repoId).files.get(p);
      if (!f) throw new Error(`hubServer: ${repoId} has no file ${p}`);
      return f.sha256;
    },
    commitOf: (repoId, revision = "main") => {
      const commit = resolveRevision(repoOrThrow(repoId), revision);
      if (!commit) throw new Error(`hubServer: ${repoId} has no revision ${revision}`);
      return commit;
    },
  };
}

/**
 * Every file under `dir` (recursively, following symlinks) as a HubFile served from disk, with paths
 * relative to `dir` using "/" and, when given, `prefix` + "/" in front.
 */
export function repoFromDir(id: string, dir: string, prefix?: string): HubRepo {
  const lead = prefix ? (prefix.endsWith("/") ? prefix : `${prefix}/`) : "";
  const files: HubFile[] = [];
  const walk = (abs: string, rel: string): void => {
    for (const name of readdirSync(abs).sort()) {
      const full = join(abs, name);
      const relPath = rel ? `${rel}/${name}` : name;
      if (statSync(full).isDirectory()) walk(full, relPath);
      else files.push({ path: lead + relPath, file: full });
    }
  };
  walk(dir, "");
  return { id, files };
}
