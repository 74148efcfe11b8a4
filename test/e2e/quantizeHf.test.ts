import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, it, type TestContext } from "vitest";
import type { ModelEntry } from "../../src/backends/store/types.js";
import { FIXTURE, lastJson, registry, sandbox, type Sandbox, slm } from "../helpers/cli.js";
import { fixtureDifferences } from "../helpers/ggufCompare.js";
import { llamaCppToolsForTests } from "../helpers/llamaCppTools.js";
import { convertPythonForTests } from "../helpers/python.js";

/** `slm quantize` of a Hugging Face folder: converted to F16 with convert_hf_to_gguf.py, then quantized. */
const HF = path.join(FIXTURE, "hf");
const REF_F16 = path.join(FIXTURE, "gguf", "tiny-arith-f16.gguf");
const BUILD_TIMEOUT = 45 * 60_000;
const SLOW = 240_000;

describe("slm quantize <HF folder>", () => {
  it("checks Python before anything else: exit 5 naming `slm setup python`, nothing left", async () => {
    // No llama.cpp tools here on purpose: the Python error must come first, not a tools build.
    const sb = sandbox(undefined, { SLM_PYTHON: "" });
    const r = await slm(["quantize", HF, "--bits", "8"], sb);
    expect(r.exitCode, r.all).toBe(5);
    expect(r.stderr).toContain("No Python environment for slm");
    expect(r.stderr).toContain("slm setup python");
    expect(existsSync(path.join(sb.home, "models")) ? readdirSync(path.join(sb.home, "models")) : []).toEqual([]);
  });

  describe("for real", () => {
    let skipReason: string | undefined;
    let sb: Sandbox;

    beforeAll(async () => {
      const [tools, py] = await Promise.all([llamaCppToolsForTests(), convertPythonForTests()]);
      skipReason = py.skip ?? tools.skip;
      if (skipReason) process.stderr.write(`[tests] skipping slm quantize of an HF folder: ${skipReason}\n`);
      sb = sandbox(undefined, { ...(tools.dir ? { SLM_LLAMA_CPP_DIR: tools.dir } : {}), ...(py.python ? { SLM_PYTHON: py.python } : {}) });
    }, BUILD_TIMEOUT);

    const need = (ctx: TestContext) => {
      if (skipReason) ctx.skip(skipReason);
    };

    it("converts to F16 on the way, gives the same Q8_0 as quantizing llama.cpp's F16, and keeps no F16 copy", async (ctx) => {
      need(ctx);
      const r = await slm(["quantize", HF, "--bits", "8", "--out", "arith-q8", "--json"], sb);
      expect(r.exitCode, r.all).toBe(0);
      const model = (lastJson(r.stdout).data as { model: ModelEntry }).model;
      expect(readdirSync(path.dirname(model.path))).toEqual(["arith-q8.gguf"]);
      expect(model.lineage[0]).toMatchObject({ from: HF, method: "quantize", parameters: { type: "Q8_0", convertedFrom: "hf", intermediate: "F16" } });
      const events = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { type: string; id?: string; status?: string });
      expect(events).toContainEqual(expect.objectContaining({ type: "step", id: "convert:run", status: "done" }));

      const ref = await slm(["quantize", REF_F16, "--bits", "8", "--out", "ref-q8", "--json"], sb);
      expect(ref.exitCode, ref.all).toBe(0);
      const refModel = (lastJson(ref.stdout).data as { model: ModelEntry }).model;
      expect(fixtureDifferences(model.path, refModel.path)).toEqual([]);

      const run = await slm(["run", "arith-q8", "12+34", "-t", "0"], sb);
      expect(run.stdout).toBe("46");
      expect(Object.keys(registry(sb).models).sort()).toEqual(["arith-q8", "ref-q8"]);
    }, SLOW);
  });
});
