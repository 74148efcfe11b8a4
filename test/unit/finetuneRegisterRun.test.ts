import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PreparedRecord } from "../../src/backends/finetune/prepare.js";
import { planFinetune } from "../../src/backends/finetune/plan.js";
import { registerPreparedRun } from "../../src/backends/finetune/registerRun.js";
import { NotFoundError, UsageError } from "../../src/core/errors.js";
import { FIXTURE } from "../helpers/cli.js";

/**
 * `slm finetune --register RUN_DIR` on folders that cannot be registered: each is refused with what is
 * missing, before anything is converted (the e2e test finetuneTorchrun.test.ts registers a finished one).
 */
const before = process.env.SLM_HOME;
let root: string;

beforeAll(() => {
  root = mkdtempSync(path.join(tmpdir(), "slm-ft-register-"));
  process.env.SLM_HOME = path.join(root, "home");
});
afterAll(() => {
  if (before === undefined) delete process.env.SLM_HOME;
  else process.env.SLM_HOME = before;
});

/** A folder as `--prepare` leaves it, with `files` (relative path → content) added. */
function runFolder(name: string, record: Partial<PreparedRecord["base"]> = {}, files: Record<string, string> = {}, full = false): string {
  const dir = path.join(root, name);
  mkdirSync(dir, { recursive: true });
  const prepared = { version: 1, name: `tiny-arith+${name}`, mergedName: null, base: { name: "tiny-arith", from: "tiny-arith", hf: path.join(FIXTURE, "hf"), registered: null, ...record }, settings: { full } };
  writeFileSync(path.join(dir, "prepared.json"), JSON.stringify(prepared));
  for (const [file, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    writeFileSync(path.join(dir, file), content);
  }
  return dir;
}

const finished = { "adapter/adapter_model.safetensors": "", "result.json": JSON.stringify({ steps: 4, train_loss: 1 }) };

describe("slm finetune --register: folders it refuses", () => {
  it("no folder, or one that --prepare did not make", async () => {
    await expect(registerPreparedRun(path.join(root, "absent"))).rejects.toThrow(NotFoundError);
    mkdirSync(path.join(root, "plain"));
    await expect(registerPreparedRun(path.join(root, "plain"))).rejects.toThrow(/not a run folder made by `slm finetune --prepare` \(it has no prepared\.json\)/);
  });

  it("training not finished: names what is missing and the checkpoint to resume from", async () => {
    const dir = runFolder("stopped", {}, { "checkpoints/step-3/state.pt": "", "checkpoints/step-12/state.pt": "" });
    const err = await registerPreparedRun(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).message).toMatch(/has not finished: no adapter\/ folder, no result\.json/);
    expect((err as UsageError).hint).toMatch(/checkpoints\/step-12: run the same torchrun command with --resume/);
    const half = runFolder("half", {}, { "adapter/adapter_model.safetensors": "" });
    await expect(registerPreparedRun(half)).rejects.toThrow(/has not finished: no result\.json/);
    // A --full run leaves the whole model instead of an adapter.
    const full = runFolder("full", {}, { "result.json": "{}" }, true);
    await expect(registerPreparedRun(full)).rejects.toThrow(/has not finished: no model\/ folder \(/);
  });

  it("a base that is not on this machine: its HF folder, its registered GGUF, or the converted one", async () => {
    await expect(registerPreparedRun(runFolder("nohf", { hf: path.join(root, "elsewhere") }, finished))).rejects.toThrow(/base model's HF folder .*elsewhere is not on this machine/);
    await expect(registerPreparedRun(runFolder("gone", { registered: "tiny-arith-q8" }, finished))).rejects.toThrow(/tiny-arith-q8 the run was prepared with is no longer registered/);
    await expect(registerPreparedRun(runFolder("nogguf", {}, finished))).rejects.toThrow(/base GGUF .*nogguf\/base-f16\.gguf is missing/);
  });

  it("a run registered already", async () => {
    const dir = runFolder("done", {}, { ...finished, "run.json": JSON.stringify({ finishedAt: "2026-12-07T00:00:00Z" }) });
    await expect(registerPreparedRun(dir)).rejects.toThrow(/registered already \(as tiny-arith\+done\)/);
  });

  it("slm finetune leaves a folder prepared for torchrun alone (training may be going on in it)", () => {
    const sub = path.join(FIXTURE, "data", "sub-train.jsonl");
    const dir = path.join(process.env.SLM_HOME!, "runs", "tiny-arith+sub-train");
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, "prepared.json"), "{}");
    for (const resume of [false, true]) {
      expect(() => planFinetune({ ref: path.join(FIXTURE, "hf"), data: sub, resume })).toThrow(/tiny-arith\+sub-train is prepared for torchrun in .*; slm does not train in that folder itself/);
    }
  });
});
