import { createHash, type Hash } from "node:crypto";
import type { FileHandle } from "node:fs/promises";

export type Expected = { algo: "sha256"; hex: string } | { algo: "git-sha1"; hex: string };

function newHash(expected: Expected, size: number): Hash {
  if (expected.algo === "sha256") return createHash("sha256");
  // A git blob id is sha1 over "blob <size>\0" followed by the content.
  return createHash("sha1").update(`blob ${size}\0`);
}

export interface Span {
  start: number;
  end: number;
  written: number;
}

/**
 * Hashes a file that is written in parallel parts, in order, while it downloads. The "frontier" is how
 * far the hash has got; bytes written exactly at the frontier are hashed from memory, and bytes that
 * landed beyond it (other parts, or a resumed download) are read back from the file when the frontier
 * reaches them. Node cannot save a hash's state, so a resumed download re-reads what it already has.
 */
export class FrontierHasher {
  private readonly hash: Hash;
  private frontier = 0;
  private busy: Promise<void> | undefined;

  constructor(
    private readonly expected: Expected,
    private readonly size: number,
    private readonly fh: FileHandle,
    private readonly spans: Span[],
  ) {
    this.hash = newHash(expected, size);
  }

  /** Called after `bufs` were written at `pos`: hash them now if they sit at the frontier. */
  written(pos: number, bufs: Buffer[]): void {
    if (!this.busy && pos === this.frontier) {
      for (const b of bufs) this.hash.update(b);
      for (const b of bufs) this.frontier += b.length;
    }
    this.catchUp();
  }

  /** Reads back whatever is on disk right after the frontier. Safe to call any time. */
  catchUp(): Promise<void> {
    if (!this.busy) {
      this.busy = this.drain().finally(() => {
        this.busy = undefined;
      });
    }
    return this.busy;
  }

  private available(): number {
    const span = this.spans.find((s) => s.start <= this.frontier && this.frontier < s.end);
    return span ? span.start + span.written - this.frontier : 0;
  }

  private async drain(): Promise<void> {
    let buf: Buffer | undefined;
    for (let n = this.available(); n > 0; n = this.available()) {
      buf ??= Buffer.allocUnsafe(4 << 20);
      const { bytesRead } = await this.fh.read(buf, 0, Math.min(n, buf.length), this.frontier);
      if (bytesRead <= 0) break;
      this.hash.update(buf.subarray(0, bytesRead));
      this.frontier += bytesRead;
    }
  }

  /** Waits for the frontier to reach the end, then compares. */
  async verify(): Promise<{ ok: boolean; actual: string }> {
    while (this.frontier < this.size) {
      const before = this.frontier;
      await this.catchUp();
      if (this.frontier === before) break;
    }
    const actual = this.frontier === this.size ? this.hash.digest("hex") : `incomplete at ${this.frontier}/${this.size}`;
    return { ok: actual === this.expected.hex, actual };
  }
}
