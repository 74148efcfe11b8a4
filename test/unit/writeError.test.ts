import { mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { writeReport } from "../../src/backends/eval/report.js";
import { writeTranscript } from "../../src/backends/llama/chat.js";
import { EXIT } from "../../src/core/errors.js";

/**
 * Atomic writes go through a temporary file beside the target; when they fail, the error names the
 * file the user gave and why, never the temporary one. A path under a regular file cannot be written
 * even by root (tests run as root, which ignores file modes).
 */
describe("a file slm cannot write", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "slm-write-"));
  const plain = path.join(dir, "plain-file");
  writeFileSync(plain, "x");

  it("/save names the file and the reason, not write-file-atomic's temporary file", async () => {
    const target = path.join(plain, "chat.json");
    const err = await writeTranscript(target, { version: 1, messages: [] }).catch((e: unknown) => e);
    expect(err).toMatchObject({ exitCode: EXIT.usage, message: `Cannot write ${target}: a part of its path is a file, not a folder.` });
    expect((err as { hint?: string }).hint).toBeTruthy();
  });

  it("/save into a folder that does not exist says so", async () => {
    const target = path.join(dir, "no-such-folder", "chat.json");
    const err = await writeTranscript(target, { version: 1, messages: [] }).catch((e: unknown) => e);
    expect((err as Error).message).toBe(`Cannot write ${target}: its folder does not exist.`);
    expect(readdirSync(dir)).toEqual(["plain-file"]);
  });

  it("eval --report names its file the same way", async () => {
    const target = path.join(plain, "r.md");
    const result = { models: [], tasks: [], settings: {}, date: new Date().toISOString(), seconds: 0 };
    const err = await writeReport(result as unknown as Parameters<typeof writeReport>[0], target).catch((e: unknown) => e);
    expect((err as Error).message).toBe(`Cannot write ${target}: a part of its path is a file, not a folder.`);
  });
});
