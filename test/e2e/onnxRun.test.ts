import { writeFileSync } from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, it, type TestContext } from "vitest";
import { FIXTURE, lastJson, sandbox, slm } from "../helpers/cli.js";
import { onnxFixture } from "../helpers/onnxFixture.js";

/**
 * `slm run` on tiny-arith exported to ONNX by `slm export` (test/helpers/onnxFixture.ts): the answer, the
 * dtype picked by `--dtype`, by `NAME:q4` and by the CPU default rule (q4 before fp32), and the refusals
 * that only concern a model that loads (the folder-level bad input is in onnxBadInput.test.ts).
 */
const SLOW = 300_000;
const GGUF = path.join(FIXTURE, "gguf", "tiny-arith-f32.gguf");

/** The runtime and variant a `--json` run says it loaded (its settings, beside the answer). */
function ranVariant(stdout: string): string | undefined {
  const settings = (lastJson(stdout).data as { settings: { runtime?: string; dtype?: string } }).settings;
  expect(settings.runtime).toBe("onnxruntime");
  return settings.dtype;
}

describe("slm run on an ONNX model", () => {
  let dir = "";
  let skip: string | undefined;
  const sb = sandbox();

  beforeAll(async () => {
    const f = await onnxFixture();
    skip = f.skip;
    if (skip) process.stderr.write(`[tests] skipping slm run on ONNX: ${skip}\n`);
    dir = f.dir ?? "";
  }, SLOW);
  const need = (ctx: TestContext) => {
    if (skip) ctx.skip(skip);
  };

  for (const dtype of ["fp32", "q4"]) {
    it(`answers 12+34 → 46 with --dtype ${dtype}, and says which variant it ran`, async (ctx) => {
      need(ctx);
      const r = await slm(["run", dir, "12+34", "--temperature", "0", "--dtype", dtype, "--json"], sb);
      expect(r.exitCode, r.all).toBe(0);
      const res = lastJson(r.stdout);
      expect(res.type).toBe("result");
      expect((res.data as { text: string }).text.trim()).toBe("46");
      expect(ranVariant(r.stdout)).toBe(dtype);
    });
  }

  it("reads NAME:q4 as --dtype q4, and picks q4 over fp32 when no dtype is asked for (the CPU rule)", async (ctx) => {
    need(ctx);
    const suffixed = await slm(["run", `${dir}:q4`, "57+23", "--temperature", "0", "--json"], sb);
    expect(suffixed.exitCode, suffixed.all).toBe(0);
    expect((lastJson(suffixed.stdout).data as { text: string }).text.trim()).toBe("80");
    expect(ranVariant(suffixed.stdout)).toBe("q4");
    const plain = await slm(["run", dir, "57+23", "--temperature", "0", "--json"], sb);
    expect(plain.exitCode, plain.all).toBe(0);
    expect(ranVariant(plain.stdout)).toBe("q4");
  });

  it("prints the answer as plain text on stdout without --json", async (ctx) => {
    need(ctx);
    const r = await slm(["run", dir, "12+34", "--temperature", "0", "--dtype", "fp32"], sb);
    expect(r.exitCode, r.all).toBe(0);
    expect(r.stdout.trim()).toBe("46");
  });

  it("refuses --lora on an ONNX model, pointing at `slm export` of the merged fine-tune", async (ctx) => {
    need(ctx);
    const r = await slm(["run", dir, "57-23", "--lora", path.join(FIXTURE, "lora-sub"), "--json"], sb);
    expect(r.exitCode, r.all).toBe(2);
    const err = lastJson(r.stdout).error!;
    expect(err.message + (err.hint ?? "")).toMatch(/slm export .*--format onnx/);
    expect(r.all).not.toMatch(/\n\s+at /);
  });

  it("refuses a JSON schema on an ONNX model (it cannot constrain its output)", async (ctx) => {
    need(ctx);
    const schema = path.join(sb.home, "..", "schema.json");
    writeFileSync(schema, JSON.stringify({ type: "object", properties: { a: { type: "number" } } }));
    const r = await slm(["run", dir, "12+34", "--json-schema", schema, "--json"], sb);
    expect(r.exitCode, r.all).toBe(2);
    expect(lastJson(r.stdout).error!.message).toMatch(/not supported on ONNX models/i);
  });

  it("refuses --dtype for a GGUF model (dtypes name ONNX variants)", async (ctx) => {
    need(ctx);
    const r = await slm(["run", GGUF, "12+34", "--dtype", "q4", "--json"], sb);
    expect(r.exitCode, r.all).toBe(2);
    const err = lastJson(r.stdout).error!;
    expect(err.message).toMatch(/dtype/);
    expect(err.message).toMatch(/GGUF/);
    expect(err.message).toMatch(/ONNX/);
  });
});
