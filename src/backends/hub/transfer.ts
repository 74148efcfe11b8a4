import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import path from "node:path";
import { open, type FileHandle } from "node:fs/promises";
import type { IncomingMessage } from "node:http";
import writeFileAtomic from "write-file-atomic";
import { CancelledError, IntegrityError, NetworkError, SlmError, StorageError } from "../../core/errors.js";
import { formatBytes } from "../../core/format.js";
import { isDiskFull, storageErrorOf } from "../../core/storage.js";
import { type Expected, FrontierHasher, type Span } from "./digest.js";
import { RetryableError, openRange } from "./http.js";
import { backoff, sleep } from "./retry.js";
import { partialPaths } from "../store/hfCache.js";

/**
 * Our own transfer, because @huggingface/hub can neither resume, verify nor report progress:
 * parallel HTTP ranges into `<blob>.slm-partial`, a small JSON beside it recording how much of each
 * range is on disk (so a killed process resumes where it stopped), sha256 computed while streaming,
 * and a rename to the blob name only once the checksum matches.
 */
export interface TransferOptions {
  url: string;
  dest: string;
  size: number;
  expected: Expected;
  /** Recorded in the state file: a resume must fetch the same commit. */
  commit: string;
  repo: string;
  repoPath: string;
  token?: string;
  signal?: AbortSignal;
  connections: number;
  /** Size of the pieces the connections share; files under two pieces use one connection. */
  pieceBytes?: number;
  stallMs?: number;
  maxRetries?: number;
  onProgress?: (done: number, total: number) => void;
}

interface PartialState {
  version: 1;
  commit: string;
  repoPath: string;
  size: number;
  expected: Expected;
  spans: Span[];
}

const DEFAULT_PIECE = 32 << 20;
const HIGH_WATER = 8 << 20;

/** The commit an unfinished download of `dest` was pinned to, if one is waiting to be resumed. */
export function pendingCommit(dest: string): string | undefined {
  const st = readState(dest);
  return st?.commit;
}

/** Bytes of `dest` already on disk from an unfinished download (0 when there is none). */
export function partialBytes(dest: string): number {
  return readState(dest)?.spans.reduce((a, s) => a + s.written, 0) ?? 0;
}

function readState(dest: string): PartialState | undefined {
  const { data, state } = partialPaths(dest);
  if (!existsSync(state) || !existsSync(data)) return undefined;
  try {
    const st = JSON.parse(readFileSync(state, "utf8")) as PartialState;
    return st.version === 1 && Array.isArray(st.spans) ? st : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Splits a file into pieces fetched in file order by a pool of connections. In-order pieces keep the
 * hash frontier moving during the download: with one long range per connection most of the file was
 * read back and hashed only after the last byte arrived (docs/benchmarks.md, pull, finding 3).
 */
function planSpans(size: number, connections: number, piece: number): Span[] {
  if (connections <= 1 || size < 2 * piece) return [{ start: 0, end: size, written: 0 }];
  const spans: Span[] = [];
  for (let start = 0; start < size; start += piece) spans.push({ start, end: Math.min(size, start + piece), written: 0 });
  return spans;
}

export async function downloadFile(o: TransferOptions): Promise<{ resumedBytes: number }> {
  const { data, state } = partialPaths(o.dest);
  const prior = readState(o.dest);
  const reusable = prior && prior.size === o.size && prior.expected.hex === o.expected.hex && prior.commit === o.commit;
  const spans = reusable ? prior.spans : planSpans(o.size, o.connections, o.pieceBytes ?? DEFAULT_PIECE);
  const resumedBytes = spans.reduce((a, s) => a + s.written, 0);
  let fh: FileHandle;
  try {
    mkdirSync(path.dirname(o.dest), { recursive: true });
    fh = await open(data, reusable ? "r+" : "w+");
  } catch (err) {
    // Named here, so the file's failed step says "read-only" too, not a bare errno.
    throw storageErrorOf(err) ?? err;
  }
  // write-file-atomic removes its temp file when a write fails (a full disk left `*.json.tmp` behind).
  // No fsync: the state only has to under-count what is on disk, and this runs twice a second.
  const saveState = () => {
    const st: PartialState = { version: 1, commit: o.commit, repoPath: o.repoPath, size: o.size, expected: o.expected, spans };
    writeFileAtomic.sync(state, JSON.stringify(st), { fsync: false });
  };
  try {
    saveState();
  } catch (err) {
    await fh.close();
    if (!reusable) rmSync(data, { force: true });
    throw storageErrorOf(err) ?? err;
  }
  const hasher = new FrontierHasher(o.expected, o.size, fh, spans);
  void hasher.catchUp();
  const done = () => spans.reduce((a, s) => a + s.written, 0);
  let lastReport = 0;
  const report = (force = false) => {
    const now = Date.now();
    if (force || now - lastReport >= 100) {
      lastReport = now;
      o.onProgress?.(done(), o.size);
    }
  };
  let lastSave = Date.now();
  const persist = () => {
    if (Date.now() - lastSave >= 500) {
      lastSave = Date.now();
      saveState();
    }
  };
  report(true);
  // One internal controller so a failing part stops its siblings.
  const inner = new AbortController();
  const onOuterAbort = () => inner.abort();
  o.signal?.addEventListener("abort", onOuterAbort, { once: true });
  let next = 0;
  const take = (): Span | undefined => {
    while (next < spans.length && spans[next]!.written >= spans[next]!.end - spans[next]!.start) next++;
    return spans[next++];
  };
  const worker = async () => {
    for (let span = take(); span; span = take()) {
      await fetchSpan(o, fh, span, inner.signal, hasher, () => {
        report();
        persist();
      });
    }
  };
  try {
    await Promise.all(
      Array.from({ length: Math.max(1, Math.min(o.connections, spans.length)) }, () =>
        worker().catch((err) => {
          inner.abort();
          throw err;
        }),
      ),
    );
  } catch (err) {
    try {
      saveState();
    } catch {
      // A full disk cannot take the new state; the one saved last under-counts what is on disk,
      // so a resume fetches those bytes again and stays correct.
    }
    await fh.close();
    if (o.signal?.aborted) throw new CancelledError("Download interrupted; run the same `slm pull` again to resume.");
    if (isDiskFull(err)) {
      throw new StorageError(`The disk is full while writing ${o.repoPath} (${formatBytes(done())} of ${formatBytes(o.size)} kept to resume).`, path.dirname(o.dest), {
        cause: err,
        hint: `Free some space on the disk holding ${path.dirname(o.dest)} (or point HF_HUB_CACHE elsewhere), then run the same \`slm pull\` to resume.`,
      });
    }
    throw storageErrorOf(err) ?? err;
  } finally {
    o.signal?.removeEventListener("abort", onOuterAbort);
  }
  report(true);
  const { ok, actual } = await hasher.verify();
  await fh.close();
  if (!ok) {
    rmSync(data, { force: true });
    rmSync(state, { force: true });
    throw new IntegrityError(`Checksum mismatch for ${o.repoPath}: expected ${o.expected.algo} ${o.expected.hex}, got ${actual}. The corrupt download was deleted.`, {
      hint: "Run the pull again; if it keeps failing, the server or a proxy is altering the file.",
    });
  }
  renameSync(data, o.dest);
  rmSync(state, { force: true });
  return { resumedBytes };
}

async function fetchSpan(o: TransferOptions, fh: FileHandle, span: Span, signal: AbortSignal, hasher: FrontierHasher, onData: () => void): Promise<void> {
  const maxRetries = o.maxRetries ?? 6;
  let failures = 0;
  while (span.written < span.end - span.start) {
    const before = span.written;
    try {
      const res = await openRange({ url: o.url, start: span.start + span.written, end: span.end - 1, token: o.token, signal, stallMs: o.stallMs ?? 30_000, repo: o.repo, repoPath: o.repoPath });
      await pump(res, fh, span, hasher, onData, signal);
      if (span.written < span.end - span.start) throw new RetryableError(`Connection closed early for ${o.repoPath}.`);
    } catch (err) {
      if (signal.aborted) throw new CancelledError();
      if (!(err instanceof RetryableError)) throw err;
      failures = span.written > before ? 1 : failures + 1;
      if (failures > maxRetries) throw new NetworkError(`Gave up on ${o.repoPath} after ${maxRetries} retries: ${err.message}`, { hint: "Run the same `slm pull` again to resume from where it stopped." });
      await sleep(backoff(failures - 1), signal);
    }
  }
}

/** Streams one response into the file at the span's position, pausing the socket while writes lag. */
function pump(res: IncomingMessage, fh: FileHandle, span: Span, hasher: FrontierHasher, onData: () => void, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let writing: Promise<void> | undefined;
    let ended = false;
    let failed = false;
    const limit = span.end - span.start;
    // Settle only after an in-flight write lands, so a retry never starts from a stale offset.
    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      res.destroy();
      void Promise.resolve(writing).then(() => reject(err));
    };
    const flush = (): void => {
      if (writing || failed) return;
      if (pending.length === 0) {
        if (ended) resolve();
        return;
      }
      writing = write().finally(() => {
        writing = undefined;
        if (!failed) {
          if (res.isPaused() && !ended) res.resume();
          flush();
        }
      });
    };
    const write = async (): Promise<void> => {
      const bufs = pending;
      const n = pendingBytes;
      pending = [];
      pendingBytes = 0;
      const pos = span.start + span.written;
      try {
        if (span.written + n > limit) throw new SlmError("The server sent more bytes than the requested range.");
        let off = 0;
        while (off < n) {
          const { bytesWritten } = await fh.writev(off === 0 ? bufs : [Buffer.concat(bufs).subarray(off)], pos + off);
          off += bytesWritten;
        }
      } catch (err) {
        return fail(err);
      }
      span.written += n;
      hasher.written(pos, bufs);
      try {
        onData();
      } catch (err) {
        // Saving the resume state can fail too (a full disk): end the transfer through the same path.
        fail(err);
      }
    };
    res.on("data", (chunk: Buffer) => {
      pending.push(chunk);
      pendingBytes += chunk.length;
      if (pendingBytes >= HIGH_WATER) res.pause();
      flush();
    });
    res.on("end", () => {
      ended = true;
      flush();
    });
    res.on("error", (err) => fail(signal.aborted ? new CancelledError() : new RetryableError(`Connection dropped: ${err.message}`)));
    res.on("close", () => {
      if (!ended && !failed) fail(new RetryableError("Connection closed before the end of the range."));
    });
  });
}
