import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, it, type TestContext } from "vitest";
import type { ModelEntry } from "../../src/backends/store/types.js";
import { lastJson, sandbox, slm } from "../helpers/cli.js";
import { hubPerTest } from "../helpers/hubPerTest.js";
import { repoFromDir } from "../helpers/hubServer.js";
import { onnxFixture } from "../helpers/onnxFixture.js";

/**
 * The user's path from the Hub to an answer: tiny-arith's real ONNX export served by the local Hub as an
 * onnx-community-shaped repository, `slm pull --format onnx` (one variant: q4 by the CPU rule), then `slm
 * run` of the pulled name; a second pull adds fp32 to the same model, and `NAME:fp32` runs that one.
 */
const SLOW = 300_000;
const REPO = "onnx-community/tiny-arith-ONNX";
const hub = hubPerTest();

describe("pull an ONNX model from the Hub and run it", () => {
  let skip: string | undefined;
  let dir = "";
  beforeAll(async () => {
    const f = await onnxFixture();
    skip = f.skip;
    if (skip) process.stderr.write(`[tests] skipping pull-and-run of ONNX: ${skip}\n`);
    dir = f.dir ?? "";
  }, SLOW);
  const need = (ctx: TestContext) => {
    if (skip) ctx.skip(skip);
  };

  it("pulls only q4, answers 12+34 → 46 from it; a second pull adds fp32, which NAME:fp32 runs", async (ctx) => {
    need(ctx);
    const s = await hub({ repos: [repoFromDir(REPO, dir)] });
    const sb = sandbox(s.url);
    const pulled = await slm(["pull", REPO, "--format", "onnx", "--json"], sb);
    expect(pulled.exitCode, pulled.all).toBe(0);
    const entry = (lastJson(pulled.stdout).data as { model: ModelEntry }).model;
    expect(entry.format).toBe("onnx");
    expect(existsSync(path.join(entry.path, "onnx", "model_q4.onnx"))).toBe(true);
    expect(existsSync(path.join(entry.path, "onnx", "model.onnx")), "the fp32 variant was not asked for").toBe(false);
    // The bytes served are the bytes the export wrote.
    expect(readFileSync(path.join(entry.path, "onnx", "model_q4.onnx")).equals(readFileSync(path.join(dir, "onnx", "model_q4.onnx")))).toBe(true);

    const q4 = await slm(["run", entry.name, "12+34", "--temperature", "0", "--json"], sb);
    expect(q4.exitCode, q4.all).toBe(0);
    expect((lastJson(q4.stdout).data as { text: string }).text.trim()).toBe("46");

    const more = await slm(["pull", REPO, "--format", "onnx", "--dtype", "fp32", "--json"], sb);
    expect(more.exitCode, more.all).toBe(0);
    const fp32 = await slm(["run", `${entry.name}:fp32`, "57+23", "--temperature", "0", "--json"], sb);
    expect(fp32.exitCode, fp32.all).toBe(0);
    expect((lastJson(fp32.stdout).data as { text: string }).text.trim()).toBe("80");
    expect(JSON.stringify(lastJson(fp32.stdout).data)).toMatch(/"dtype":"fp32"/);
  }, SLOW);
});
