import { createHash, randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { Registry } from "../../src/backends/store/types.js";
import { FIXTURE, ROOT, type Sandbox, lastJson, sandbox, slm } from "../helpers/cli.js";
import { hubPerTest } from "../helpers/hubPerTest.js";
import { llamaCppToolsForTests } from "../helpers/llamaCppTools.js";

/**
 * `slm rm` and what `slm list` says about leftovers, end to end: the reference count over every file
 * the registry names, all-or-none removal, and discarding unfinished pulls and abandoned fine-tune runs.
 * Fine-tunes use the stand-in Python (test/helpers/fakePython.mjs), pulls the local Hub server.
 */
const FAKE = path.join(ROOT, "test", "helpers", "fakePython.mjs");
const HF = path.join(FIXTURE, "hf");
const SUB = path.join(FIXTURE, "data", "sub-train.jsonl");
const F16 = path.join(ROOT, "models", "tiny-arith-f16.gguf");
const SLOW = 240_000;
const BUILD_TIMEOUT = 45 * 60_000;

const hub = hubPerTest();

beforeAll(() => {
  chmodSync(FAKE, 0o755);
});

const registry = (sb: Sandbox): Registry => {
  const f = path.join(sb.home, "registry.json");
  return existsSync(f) ? (JSON.parse(readFileSync(f, "utf8")) as Registry) : { version: 1, models: {} };
};
const sha256 = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");
const repoDir = (sb: Sandbox, repo: string) => path.join(sb.hubCache, `models--${repo.replace("/", "--")}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface RmResult {
  removed: { name: string; kind: string; freedBytes: number; deleted: string[]; kept: { path: string; usedBy: string[] }[]; runFolders?: string[] }[];
  freedBytes: number;
}
interface ListResult {
  models: { name: string }[];
  leftovers: { downloads: { repo: string; bytes: number; receivedBytes: number; totalBytes: number; active: boolean }[]; runs: { name: string; path: string; bytes: number; resumable: boolean; finished: boolean }[]; bytes: number };
}
const listJson = async (sb: Sandbox) => lastJson((await slm(["list", "--json"], sb)).stdout).data as ListResult;

function bigFile(bytes: number): string {
  const file = path.join(mkdtempSync(path.join(tmpdir(), "slm-big-")), "big.bin");
  writeFileSync(file, randomBytes(bytes));
  return file;
}

describe("slm rm: a file another model uses is never deleted", () => {
  it(
    "rm of a base+adapter model keeps the adapter its quantized copy loads; the copy still runs; the last user frees it",
    async (ctx) => {
      // Found (or built once per machine) here, so the other tests need not wait for a build.
      const tools = await llamaCppToolsForTests();
      if (!tools.dir) ctx.skip(tools.skip);
      const sb = sandbox(undefined, { SLM_PYTHON: FAKE, SLM_LLAMA_CPP_DIR: tools.dir! });
      const ft = await slm(["finetune", HF, "--lora", SUB, "--out", "mysub", "--max-steps", "2", "--json"], sb);
      expect(ft.exitCode, ft.all).toBe(0);
      const q = await slm(["quantize", "tiny-arith+mysub", "--bits", "4", "--json"], sb);
      expect(q.exitCode, q.all).toBe(0);
      const adapter = path.join(sb.home, "models", "tiny-arith+mysub", "adapter.gguf");
      expect(registry(sb).models["tiny-arith+mysub-Q4_K_M"]!.adapters).toEqual([{ path: adapter, scale: 1 }]);

      const rm = await slm(["rm", "tiny-arith+mysub", "--json"], sb);
      expect(rm.exitCode, rm.all).toBe(0);
      // What the issue saw: the adapter went, and the quantized copy no longer ran.
      expect(existsSync(adapter)).toBe(true);
      const run = await slm(["run", "tiny-arith+mysub-Q4_K_M", "44-38", "-t", "0"], sb);
      expect(run.exitCode, run.all).toBe(0);
      expect(run.stdout.trim()).toMatch(/^\d+$/);
      const res = lastJson(rm.stdout).data as RmResult;
      expect(res.removed[0]).toMatchObject({ name: "tiny-arith+mysub", kind: "model", kept: [{ path: adapter, usedBy: ["tiny-arith+mysub-Q4_K_M"] }] });
      expect(res.removed[0]!.freedBytes).toBeGreaterThan(0);
      expect(existsSync(path.join(sb.home, "models", "tiny-arith+mysub", "base-f16.gguf"))).toBe(false);
      // The quantized copy's lineage still names the run folder (PEFT adapter): it is not abandoned yet.
      expect(res.removed[0]!.runFolders).toBeUndefined();

      // A new model may not take the name whose folder still holds the adapter in use.
      const again = await slm(["finetune", HF, "--lora", SUB, "--out", "mysub", "--max-steps", "2"], sb);
      expect(again.exitCode).toBe(2);
      expect(again.stderr).toMatch(/still holds files that tiny-arith\+mysub-Q4_K_M uses/);
      expect(existsSync(adapter)).toBe(true);

      const last = await slm(["rm", "tiny-arith+mysub-Q4_K_M", "--json"], sb);
      expect(last.exitCode, last.all).toBe(0);
      // Now the finished run's folder is: rm says so, and list shows it.
      expect((lastJson(last.stdout).data as RmResult).removed[0]!.runFolders).toEqual([path.join(sb.home, "runs", "tiny-arith+mysub")]);
      expect(existsSync(path.join(sb.home, "models", "tiny-arith+mysub"))).toBe(false);
      expect(readdirSync(path.join(sb.home, "models"))).toEqual([]);
      expect((await listJson(sb)).leftovers.runs).toMatchObject([{ name: "tiny-arith+mysub", finished: true }]);
    },
    BUILD_TIMEOUT + SLOW,
  );
});

describe("slm rm: every name is checked first, then all or none", () => {
  it("an unknown name among known ones removes nothing and exits 3 naming it; a good run says what it freed", async () => {
    const s = await hub({ repos: [{ id: "test/tiny-GGUF", files: [{ path: "tiny-f16.gguf", file: F16 }] }] });
    const sb = sandbox(s.url);
    expect((await slm(["pull", "test/tiny-GGUF", "--name", "zz"], sb)).exitCode).toBe(0);
    const blob = path.join(repoDir(sb, "test/tiny-GGUF"), "blobs", sha256(F16));
    for (const args of [["zz", "nonexistent-model"], ["zz-x", "zz"]]) {
      const r = await slm(["rm", ...args], sb);
      expect(registry(sb).models.zz).toBeDefined();
      expect(existsSync(blob)).toBe(true);
      expect(r.exitCode, r.all).toBe(3);
      expect(r.stderr).toContain(`"${args.find((a) => a !== "zz")}"`);
      expect(r.stderr).toMatch(/Nothing was removed/);
    }
    const builtin = await slm(["rm", "zz", "tiny-arith"], sb);
    expect(builtin.exitCode).toBe(2);
    expect(registry(sb).models.zz).toBeDefined();

    const plain = await slm(["rm", "zz"], sb);
    expect(plain.exitCode, plain.all).toBe(0);
    expect(plain.stdout.trim()).toMatch(/^removed zz \(freed 6\.\d+ MB\)$/);
    expect(existsSync(blob)).toBe(false);
    expect((await slm(["pull", "test/tiny-GGUF", "--name", "zz"], sb)).exitCode).toBe(0);
    const json = await slm(["rm", "zz", "--json"], sb);
    expect(lastJson(json.stdout).data).toMatchObject({ removed: [{ name: "zz", kind: "model", freedBytes: readFileSync(F16).length, kept: [] }], freedBytes: readFileSync(F16).length });
  });
});

describe("slm rm and slm list: what interrupted pulls and fine-tunes leave", () => {
  it(
    "an interrupted pull is listed with its size and `slm rm <repo>` discards it (partial blob, finished files, pin)",
    async () => {
      const big = bigFile(24 << 20);
      const repo = { id: "acme/big", files: [{ path: "config.json", data: Buffer.from('{"model_type":"llama"}\n') }, { path: "model.safetensors", file: big }] };
      const s = await hub({ repos: [repo], throttleBytesPerSec: 2 << 20 });
      const sb = sandbox(s.url);
      const before = await slm(["rm", "acme/big"], sb);
      expect(before.exitCode).toBe(3);
      const proc = slm(["pull", "acme/big", "--format", "hf", "--connections", "1"], sb);
      const partial = path.join(repoDir(sb, "acme/big"), "blobs", `${sha256(big)}.slm-partial.json`);
      for (let i = 0; i < 200 && !existsSync(partial); i++) await sleep(100);
      await sleep(1000);
      // While the pull runs, it is listed as downloading and cannot be removed.
      expect((await listJson(sb)).leftovers.downloads).toMatchObject([{ repo: "acme/big", active: true }]);
      expect((await slm(["rm", "acme/big"], sb)).exitCode).toBe(2);
      proc.kill("SIGINT");
      expect((await proc).exitCode).toBe(130);

      const l = await listJson(sb);
      expect(l.models.map((m) => m.name)).not.toContain("acme/big");
      expect(l.leftovers.downloads).toHaveLength(1);
      const d = l.leftovers.downloads[0]!;
      expect(d).toMatchObject({ repo: "acme/big", totalBytes: 24 << 20, active: false });
      expect(d.receivedBytes).toBeGreaterThan(0);
      expect(d.bytes).toBeGreaterThanOrEqual(d.receivedBytes);
      const plain = await slm(["list"], sb);
      expect(plain.stdout).toMatch(/acme\/big\s+unfinished download \(\d+(\.\d+)? [kM]B of 25\.2 MB\)/);
      expect(plain.stdout).toMatch(/slm rm --leftovers/);

      const rm = await slm(["rm", "acme/big", "--json"], sb);
      expect(rm.exitCode, rm.all).toBe(0);
      const res = lastJson(rm.stdout).data as RmResult;
      expect(res.removed).toMatchObject([{ name: "acme/big", kind: "download" }]);
      expect(res.freedBytes).toBeGreaterThanOrEqual(d.receivedBytes);
      // Nothing of the pull is left: not the partial, not config.json (finished, never registered), not the pin.
      expect(existsSync(repoDir(sb, "acme/big"))).toBe(false);
      expect(existsSync(path.join(sb.home, "pending")) ? readdirSync(path.join(sb.home, "pending")) : []).toEqual([]);
      expect((await listJson(sb)).leftovers).toEqual({ downloads: [], runs: [], bytes: 0 });
    },
    SLOW,
  );

  it(
    "an interrupted fine-tune's run folder is listed; a running one is neither listed nor removable; rm --leftovers discards it",
    async () => {
      const sb = sandbox(undefined, { SLM_PYTHON: FAKE });
      const child = slm(["finetune", HF, "--lora", SUB, "--out", "ctrlc", "--max-steps", "40", "--json"], sb, { env: { ...sb.env, FAKE_STEP_MS: "150" } });
      let seen = "";
      await new Promise<void>((resolve) => {
        child.stdout!.on("data", (b: Buffer) => {
          seen += b.toString();
          if (/"id":"train","unit":"steps","current":7/.test(seen)) resolve();
        });
      });
      // Running: its folder holds a live lock.
      expect((await listJson(sb)).leftovers.runs).toEqual([]);
      const busy = await slm(["rm", "tiny-arith+ctrlc"], sb);
      expect(busy.exitCode).toBe(2);
      expect(busy.stderr).toMatch(/in use/);
      child.kill("SIGINT");
      expect((await child).exitCode).toBe(130);
      const dir = path.join(sb.home, "runs", "tiny-arith+ctrlc");
      expect(existsSync(dir)).toBe(true);

      const l = await listJson(sb);
      expect(l.leftovers.runs).toMatchObject([{ name: "tiny-arith+ctrlc", path: dir, resumable: true, finished: false }]);
      expect(l.leftovers.runs[0]!.bytes).toBeGreaterThan(0);
      expect((await slm(["list"], sb)).stdout).toMatch(/tiny-arith\+ctrlc\s+interrupted fine-tune run \(resumable with --resume\)/);

      const rm = await slm(["rm", "--leftovers", "--json"], sb);
      expect(rm.exitCode, rm.all).toBe(0);
      expect(lastJson(rm.stdout).data).toMatchObject({ removed: [{ name: "tiny-arith+ctrlc", kind: "run" }] });
      expect(existsSync(dir)).toBe(false);
      const none = await slm(["rm", "--leftovers"], sb);
      expect(none.stdout).toMatch(/Nothing to remove/);
    },
    SLOW,
  );
});
