import { copyFileSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import type { Registry } from "../../src/backends/store/types.js";
import { FIXTURE, ROOT, sandbox, slm } from "../helpers/cli.js";

const ADD = path.join(FIXTURE, "data", "add-eval.jsonl");

describe("slm eval: stored records are keyed by the data's content, not its path", () => {
  it("the same file by a relative path and as a copy elsewhere is one record; other settings are another", async () => {
    const sb = sandbox();
    const copy = path.join(mkdtempSync(path.join(tmpdir(), "slm-eval-copy-")), "add-eval.jsonl");
    copyFileSync(ADD, copy);
    const records = () => (JSON.parse(readFileSync(path.join(sb.home, "registry.json"), "utf8")) as Registry).builtinEvals?.["tiny-arith"] ?? [];
    for (const task of [path.relative(ROOT, ADD), copy]) {
      const r = await slm(["eval", "tiny-arith", "--task", task, "--limit", "5"], sb, { cwd: ROOT });
      expect(r.exitCode, r.all).toBe(0);
    }
    expect(records()).toHaveLength(1);
    expect(records()[0]).toMatchObject({ kind: "generate", file: copy, n: 5, settings: { limit: 5 } });

    const more = await slm(["eval", "tiny-arith", "--task", copy, "--limit", "6"], sb);
    expect(more.exitCode, more.all).toBe(0);
    expect(records().map((r) => r.settings.limit)).toEqual([5, 6]);
  }, 180_000);
});
