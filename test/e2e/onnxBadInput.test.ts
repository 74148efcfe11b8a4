import { cpSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it, type TestContext } from "vitest";
import { lastJson, sandbox, slm } from "../helpers/cli.js";
import { onnxFixture } from "../helpers/onnxFixture.js";

/**
 * ONNX folders that cannot run, each a damaged copy of the tiny-arith export: a clear message naming what is
 * wrong, the exit code of its error class (src/core/errors.ts: 2 for bad input), never a stack trace.
 */
const SLOW = 300_000;

describe("bad ONNX input", () => {
  let skip: string | undefined;
  let dir = "";
  let work = "";
  const sb = sandbox();

  beforeAll(async () => {
    const f = await onnxFixture();
    skip = f.skip;
    if (skip) process.stderr.write(`[tests] skipping bad ONNX input: ${skip}\n`);
    dir = f.dir ?? "";
    work = mkdtempSync(path.join(tmpdir(), "slm-onnx-bad-"));
  }, SLOW);
  const need = (ctx: TestContext) => {
    if (skip) ctx.skip(skip);
  };

  /** A copy of the export, changed by `change`. */
  function damaged(name: string, change: (copy: string) => void): string {
    const copy = path.join(work, name);
    cpSync(dir, copy, { recursive: true });
    change(copy);
    return copy;
  }

  async function refused(args: string[], exitCode: number): Promise<{ message: string; hint?: string; all: string }> {
    const r = await slm([...args, "--json"], sb);
    expect(r.exitCode, r.all).toBe(exitCode);
    expect(r.all, "no stack trace").not.toMatch(/\n\s+at /);
    const err = lastJson(r.stdout).error!;
    expect(err.exitCode).toBe(exitCode);
    return { ...err, all: r.all };
  }

  it("an ONNX folder without a tokenizer: says that tokenizer.json is missing", async (ctx) => {
    need(ctx);
    const copy = damaged("no-tokenizer", (c) => {
      for (const f of ["tokenizer.json", "tokenizer.model"]) rmSync(path.join(c, f), { force: true });
    });
    const err = await refused(["run", copy, "12+34", "--dtype", "fp32"], 2);
    expect(err.message).toMatch(/tokenizer\.json/);
  });

  it("an encoder-only model (BERT's config): says it is not a decoder-only text generator", async (ctx) => {
    need(ctx);
    const copy = damaged("encoder", (c) => {
      const cfg = JSON.parse(readFileSync(path.join(c, "config.json"), "utf8")) as Record<string, unknown>;
      writeFileSync(path.join(c, "config.json"), JSON.stringify({ ...cfg, architectures: ["BertModel"], model_type: "bert" }));
    });
    const err = await refused(["run", copy, "12+34", "--dtype", "fp32"], 2);
    expect(err.message).toMatch(/BertModel|bert/);
    expect(err.message).toMatch(/encoder|decoder|causal|generat/i);
  });

  it("a vision model's config: says what it is and that slm runs text generators", async (ctx) => {
    need(ctx);
    const copy = damaged("vision", (c) => {
      const cfg = JSON.parse(readFileSync(path.join(c, "config.json"), "utf8")) as Record<string, unknown>;
      writeFileSync(path.join(c, "config.json"), JSON.stringify({ ...cfg, architectures: ["ViTForImageClassification"], model_type: "vit" }));
    });
    const err = await refused(["run", copy, "12+34", "--dtype", "fp32"], 2);
    expect(err.message).toMatch(/ViTForImageClassification|vit/);
  });

  it("a truncated .onnx file: a clear error naming the file, no stack trace", async (ctx) => {
    need(ctx);
    const copy = damaged("truncated", (c) => {
      const f = path.join(c, "onnx", "model.onnx");
      truncateSync(f, Math.floor(statSync(f).size / 2));
    });
    const r = await slm(["run", copy, "12+34", "--dtype", "fp32", "--json"], sb);
    expect([2, 6, 7], r.all).toContain(r.exitCode);
    expect(r.all).not.toMatch(/\n\s+at /);
    const err = lastJson(r.stdout).error!;
    expect(err.message).toMatch(/model\.onnx/);
  });

  it("a --dtype the folder lacks: names the dtypes it has", async (ctx) => {
    need(ctx);
    const err = await refused(["run", dir, "12+34", "--dtype", "q8"], 2);
    expect(err.message + (err.hint ?? "")).toMatch(/fp32/);
    expect(err.message + (err.hint ?? "")).toMatch(/q4/);
    const suffixed = await refused(["run", `${dir}:fp16`, "12+34"], 2);
    expect(suffixed.message + (suffixed.hint ?? "")).toMatch(/fp32.*q4|q4.*fp32/);
  });

  it("a dtype outside the vocabulary: lists the vocabulary", async (ctx) => {
    need(ctx);
    const r = await slm(["run", dir, "12+34", "--dtype", "q3", "--json"], sb);
    expect(r.exitCode, r.all).toBe(2);
    expect(r.all).toMatch(/q4f16/);
  });

  it("an older export's decoder_model_merged.onnx: runs, or is refused with a message that names it", async (ctx) => {
    need(ctx);
    const copy = damaged("merged", (c) => {
      rmSync(path.join(c, "onnx", "model_q4.onnx"));
      renameSync(path.join(c, "onnx", "model.onnx"), path.join(c, "onnx", "decoder_model_merged.onnx"));
    });
    const r = await slm(["run", copy, "12+34", "--temperature", "0", "--json"], sb);
    expect(r.all).not.toMatch(/\n\s+at /);
    if (r.exitCode === 0) expect((lastJson(r.stdout).data as { text: string }).text.trim()).toBe("46");
    else {
      expect(r.exitCode, r.all).toBe(2);
      expect(lastJson(r.stdout).error!.message).toMatch(/decoder_model_merged/);
    }
  });

  it("quantize and finetune given an ONNX model: use its Hugging Face weights", async (ctx) => {
    need(ctx);
    const q = await refused(["quantize", dir, "--type", "Q4_K_M"], 2);
    expect(q.message + (q.hint ?? "")).toMatch(/Hugging Face weights/i);
    const data = path.join(work, "train.jsonl");
    writeFileSync(data, `${JSON.stringify({ messages: [{ role: "user", content: "1+1" }, { role: "assistant", content: "2" }] })}\n`);
    const f = await refused(["finetune", dir, "--lora", data], 2);
    expect(f.message + (f.hint ?? "")).toMatch(/Hugging Face weights/i);
  });
});
