import { existsSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { registerModel } from "../../src/backends/store/registry.js";
import type { LineageStep, ModelEntry } from "../../src/backends/store/types.js";

/**
 * The store's reference count, in process against a throw-away $SLM_HOME and HF cache: entries are
 * registered the way quantize and finetune register theirs (paths, files, adapters, lineage), and the
 * files they name are real files on disk.
 */
let root: string;
let home: string;
let cache: string;
const saved = { SLM_HOME: process.env.SLM_HOME, HF_HUB_CACHE: process.env.HF_HUB_CACHE };

beforeEach(() => {
  root = mkdtempSync(path.join(tmpdir(), "slm-refs-"));
  home = path.join(root, "home");
  cache = path.join(root, "hf", "hub");
  process.env.SLM_HOME = home;
  process.env.HF_HUB_CACHE = cache;
});
afterEach(() => {
  for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k];
  else process.env[k] = v;
});

function file(p: string, bytes = 1000): string {
  mkdirSync(path.dirname(p), { recursive: true });
  writeFileSync(p, Buffer.alloc(bytes, 1));
  return p;
}

function entry(name: string, o: { path: string; files: string[]; adapters?: string[]; lineage?: LineageStep[]; source?: ModelEntry["source"] }): ModelEntry {
  return {
    name,
    format: "gguf",
    path: o.path,
    files: o.files.map((p) => ({ path: p, size: existsSync(p) ? readFileSync(p).length : 0 })),
    source: o.source ?? { type: "derived" },
    size: 0,
    lineage: o.lineage ?? [],
    ...(o.adapters ? { adapters: o.adapters.map((p) => ({ path: p, scale: 1 })) } : {}),
    createdAt: "2026-01-01T00:00:00.000Z",
  };
}

const step = (method: string, parameters: Record<string, unknown>): LineageStep => ({ from: "x", method, parameters, at: "2026-01-01T00:00:00.000Z" });

/** `tiny-arith+sub` (base + adapter, from a fine-tune) and its quantized copy, which loads the same adapter. */
async function baseAdapterAndQuantized() {
  const models = path.join(home, "models");
  const runDir = path.join(home, "runs", "tiny-arith+sub");
  file(path.join(runDir, "adapter", "adapter_model.safetensors"));
  const base = file(path.join(models, "tiny-arith+sub", "base-f16.gguf"), 5000);
  const adapter = file(path.join(models, "tiny-arith+sub", "adapter.gguf"), 700);
  const quant = file(path.join(models, "tiny-arith+sub-Q4_K_M", "tiny-arith+sub-Q4_K_M.gguf"), 2000);
  const ft = step("finetune-lora", { runDir, peftAdapter: path.join(runDir, "adapter"), data: { file: "/data/sub.jsonl" } });
  await registerModel(entry("tiny-arith+sub", { path: base, files: [base, adapter], adapters: [adapter], lineage: [ft] }));
  // What quantize registers for a "base + adapter" source: its own file, and the source's adapters.
  await registerModel(entry("tiny-arith+sub-Q4_K_M", { path: quant, files: [quant], adapters: [adapter], lineage: [step("quantize", { type: "Q4_K_M", imatrix: null }), ft] }));
  return { base, adapter, quant, runDir };
}

describe("slm rm through the reference count", () => {
  it("removing a base+adapter model keeps the adapter that its quantized copy loads", async () => {
    const { base, adapter, quant } = await baseAdapterAndQuantized();
    const { removeModel } = await import("../../src/backends/store/remove.js");
    await removeModel("tiny-arith+sub");
    expect(existsSync(adapter)).toBe(true);
    expect(existsSync(quant)).toBe(true);
    expect(existsSync(base)).toBe(false);
  });

  it("the last model that uses a file frees it, its folder included; the run folder is reported, not deleted", async () => {
    const { adapter, runDir } = await baseAdapterAndQuantized();
    const { removeAll } = await import("../../src/backends/store/remove.js");
    const first = await removeAll(["tiny-arith+sub"]);
    expect(first.removed[0]).toMatchObject({ kind: "model", freedBytes: 5000, kept: [{ path: adapter, usedBy: ["tiny-arith+sub-Q4_K_M"] }] });
    expect(first.removed[0]!.runFolders).toBeUndefined();
    const second = await removeAll(["tiny-arith+sub-Q4_K_M"]);
    expect(second.removed[0]).toMatchObject({ freedBytes: 2700, kept: [], runFolders: [runDir] });
    expect(existsSync(path.join(home, "models", "tiny-arith+sub"))).toBe(false);
    expect(existsSync(path.join(home, "models", "tiny-arith+sub-Q4_K_M"))).toBe(false);
    expect(existsSync(runDir)).toBe(true);
  });

  it("checks every name first: one unknown name removes nothing (exit 3, naming it)", async () => {
    const { base, adapter, quant } = await baseAdapterAndQuantized();
    const { removeAll } = await import("../../src/backends/store/remove.js");
    await expect(removeAll(["tiny-arith+sub", "nope", "tiny-arith+sub-Q4_K_M"])).rejects.toMatchObject({ exitCode: 3, message: expect.stringMatching(/"nope".*Nothing was removed/) });
    const reg = JSON.parse(readFileSync(path.join(home, "registry.json"), "utf8"));
    expect(Object.keys(reg.models).sort()).toEqual(["tiny-arith+sub", "tiny-arith+sub-Q4_K_M"]);
    for (const f of [base, adapter, quant]) expect(existsSync(f)).toBe(true);
  });

  it("a pulled base that a fine-tuned model lists stays in the HF cache until that model goes too", async () => {
    const repoDir = path.join(cache, "models--acme--tiny-GGUF");
    const blob = file(path.join(repoDir, "blobs", "a".repeat(64)), 3000);
    const link = path.join(repoDir, "snapshots", "c".repeat(40), "tiny-f16.gguf");
    mkdirSync(path.dirname(link), { recursive: true });
    symlinkSync(path.relative(path.dirname(link), blob), link);
    await registerModel(entry("acme/tiny-GGUF", { path: link, files: [link], source: { type: "hub", repo: "acme/tiny-GGUF", revision: "main", commit: "c".repeat(40), endpoint: "http://x" } }));
    const adapter = file(path.join(home, "models", "tiny+a", "adapter.gguf"), 100);
    // finetune's registration lists the base's file, so the base is counted as used.
    await registerModel(entry("tiny+a", { path: link, files: [link, adapter], adapters: [adapter] }));
    const { removeAll } = await import("../../src/backends/store/remove.js");
    const hubRm = await removeAll(["acme/tiny-GGUF"]);
    expect(hubRm.removed[0]).toMatchObject({ freedBytes: 0, kept: [{ path: link, usedBy: ["tiny+a"] }] });
    expect(existsSync(blob)).toBe(true);
    const ftRm = await removeAll(["tiny+a"]);
    expect(ftRm.freedBytes).toBe(3100);
    expect(existsSync(blob)).toBe(false);
    expect(existsSync(link)).toBe(false);
  });
});

describe("clean-up after a failed run", () => {
  it("a run folder loses what no model uses and keeps the merged weights a registered model's lineage names", async () => {
    const runDir = path.join(home, "runs", "tiny+m");
    const merged = file(path.join(runDir, "merged", "model.safetensors"));
    const ckpt = file(path.join(runDir, "checkpoints", "step-5", "adapter.safetensors"));
    const m = file(path.join(home, "models", "tiny+m-merged", "m.gguf"));
    await registerModel(entry("tiny+m-merged", { path: m, files: [m], lineage: [step("merge-lora", { mergedHf: path.join(runDir, "merged") })] }));
    const { removeUnused } = await import("../../src/backends/store/cleanup.js");
    removeUnused(runDir);
    expect(existsSync(merged)).toBe(true);
    expect(existsSync(ckpt)).toBe(false);
    expect(existsSync(path.join(runDir, "checkpoints"))).toBe(false);
  });
});

describe("FileUsers", () => {
  it("counts path, files, adapters and absolute paths anywhere in the lineage; folders hold what is inside", async () => {
    const { FileUsers } = await import("../../src/backends/store/references.js");
    const m = entry("m", { path: "/srv/m/m.gguf", files: ["/srv/m/m.gguf"], adapters: ["/srv/a/ad.gguf"], lineage: [step("merge-lora", { mergedHf: "/srv/runs/r/merged", nested: { list: ["/srv/i/imatrix.gguf", "relative/x"] } })] });
    const users = new FileUsers([m]);
    for (const p of ["/srv/m/m.gguf", "/srv/a/ad.gguf", "/srv/runs/r/merged/model.safetensors", "/srv/i/imatrix.gguf", "/srv/runs/r", "/srv/m"]) expect(users.usersOf(p), p).toEqual(["m"]);
    for (const p of ["/srv/m/other.gguf", "/srv/runs/s", "relative/x", "/srv/runs/r-merged"]) expect(users.usersOf(p), p).toEqual([]);
    // Only what it names, or a folder above that: not a folder that merely holds something named.
    expect(users.holdersOf("/srv/runs/r")).toEqual([]);
    expect(users.holdersOf("/srv/runs/r/merged/x")).toEqual(["m"]);
  });

  it("sees a snapshot link and its blob as one file, and ignores a lineage folder above $SLM_HOME", async () => {
    const { FileUsers } = await import("../../src/backends/store/references.js");
    const blob = file(path.join(cache, "models--a--b", "blobs", "e".repeat(64)));
    const link = path.join(cache, "models--a--b", "snapshots", "c".repeat(40), "x.gguf");
    mkdirSync(path.dirname(link), { recursive: true });
    symlinkSync(path.relative(path.dirname(link), blob), link);
    const users = new FileUsers([entry("m", { path: link, files: [link], lineage: [step("finetune-lora", { hf: root })] })]);
    expect(users.usersOf(blob)).toEqual(["m"]);
    expect(users.usersOf(path.join(home, "models", "other", "o.gguf"))).toEqual([]);
  });
});
