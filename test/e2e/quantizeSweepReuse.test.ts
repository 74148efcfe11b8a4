import { readFileSync } from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, it, type TestContext } from "vitest";
import type { Registry } from "../../src/backends/store/types.js";
import { FIXTURE, type Sandbox, lastJson, sandbox, slm } from "../helpers/cli.js";
import { llamaCppToolsForTests } from "../helpers/llamaCppTools.js";

/**
 * docs/quantize.md shows a single `slm quantize` and then a sweep of the same source: the sweep used to
 * refuse with "already registered". An identical quantization made earlier is measured, not made again,
 * and --keep best never removes it; a different model under the name is still refused.
 */
const F32 = path.join(FIXTURE, "gguf", "tiny-arith-f32.gguf");
const TEXT = path.join(FIXTURE, "data", "eval-text.txt");
let tools: { dir?: string; skip?: string } = {};
beforeAll(async () => {
  tools = await llamaCppToolsForTests();
}, 45 * 60_000);

const box = (): Sandbox => sandbox(undefined, tools.dir ? { SLM_LLAMA_CPP_DIR: tools.dir } : {});
const need = (ctx: TestContext) => {
  if (!tools.dir) ctx.skip(tools.skip);
};
const registry = (sb: Sandbox) => JSON.parse(readFileSync(path.join(sb.home, "registry.json"), "utf8")) as Registry;

describe("slm quantize --sweep after a single quantize of the same source", () => {
  it("measures the identical model made before instead of refusing, and --keep best keeps it", async (ctx) => {
    need(ctx);
    const sb = box();
    const one = await slm(["quantize", F32, "--type", "Q8_0"], sb);
    expect(one.exitCode, one.all).toBe(0);
    const before = registry(sb).models["tiny-arith-f32-Q8_0"]!;
    expect(before).toBeDefined();
    const r = await slm(["quantize", F32, "--sweep", "Q8_0", "Q4_K_M", "--text", TEXT, "--keep", "best", "--json"], sb);
    expect(r.exitCode, r.all).toBe(0);
    const res = lastJson(r.stdout).data as { rows: { type: string; name: string; reused?: boolean; removed: boolean }[] };
    expect(res.rows.map((x) => [x.type, x.name, x.reused ?? false])).toEqual([["Q8_0", "tiny-arith-f32-Q8_0", true], ["Q4_K_M", "tiny-arith-f32-Q4_K_M", false]]);
    expect(res.rows[0]!.removed).toBe(false);
    // The very same entry (same file, same creation), now with the sweep's scores stored beside it.
    const { evals, ...after } = registry(sb).models["tiny-arith-f32-Q8_0"]!;
    expect(after).toEqual(before);
    expect(evals?.map((e) => e.kind)).toContain("kld");
  }, 600_000);

  it("still refuses a different model registered under a name the sweep would make", async (ctx) => {
    need(ctx);
    const sb = box();
    const pure = await slm(["quantize", F32, "--type", "Q4_K_M", "--pure"], sb);
    expect(pure.exitCode, pure.all).toBe(0);
    const r = await slm(["quantize", F32, "--sweep", "Q8_0", "Q4_K_M", "--text", TEXT], sb);
    expect(r.exitCode, r.all).toBe(2);
    expect(r.stderr).toContain('A model named "tiny-arith-f32-Q4_K_M" is already registered');
    expect(registry(sb).models["tiny-arith-f32-Q8_0"]).toBeUndefined();
  }, 600_000);
});
