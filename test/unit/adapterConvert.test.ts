import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { writeLlamaGguf } from "../../bench/ggufWriter.js";
import { convertPeftAdapter } from "../../src/backends/adapters/convert.js";
import { readSafetensors, readTensorF32 } from "../../src/backends/adapters/safetensors.js";
import { tensorBytes } from "../../src/backends/gguf/ggmlTypes.js";
import { GGML_TYPE, bf16BitsToF32, f16BitsToF32 } from "../../src/backends/gguf/quants.js";
import { readGgufHeader } from "../../src/backends/gguf/reader.js";
import { IntegrityError, MissingDependencyError, UsageError } from "../../src/core/errors.js";
import { FIXTURE } from "../helpers/cli.js";
import { LORA_SUB, copyAdapter, writeSafetensors } from "../helpers/peftAdapter.js";

const REFERENCE = path.join(FIXTURE, "gguf", "lora-sub-f32.gguf");
const BASE_GGUF = path.join(FIXTURE, "gguf", "tiny-arith-f32.gguf");
const BASE_CONFIG = path.join(FIXTURE, "hf", "config.json");

const outDir = () => mkdtempSync(path.join(tmpdir(), "slm-adapter-out-"));

/** Each tensor of a GGUF file with its raw data bytes. */
function tensorsOf(file: string): { name: string; dims: number[]; type: number; data: Buffer }[] {
  const h = readGgufHeader(file);
  const bytes = readFileSync(file);
  return h.tensors.map((t) => {
    const start = h.dataOffset + t.offset;
    return { name: t.name, dims: t.dims, type: t.type, data: bytes.subarray(start, start + tensorBytes(t.type, t.dims)!) };
  });
}

const f32s = (b: Buffer) => new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));

/** What a failed conversion must leave in its output folder: nothing. */
function expectNothingWritten(dir: string): void {
  expect(readdirSync(dir)).toEqual([]);
}

describe("PEFT → GGUF LoRA conversion (TypeScript) against llama.cpp's convert_lora_to_gguf.py", () => {
  afterEach(() => vi.unstubAllEnvs());

  it("writes every tensor of the reference exactly: names, order, shapes, types and f32 data", async () => {
    const out = path.join(outDir(), "lora-sub.gguf");
    const r = await convertPeftAdapter({ adapterDir: LORA_SUB, out, baseGguf: BASE_GGUF });
    expect(r).toMatchObject({ architecture: "llama", tensors: 56, alpha: 16, converter: "typescript" });
    const mine = tensorsOf(out);
    const ref = tensorsOf(REFERENCE);
    expect(mine.map((t) => [t.name, t.dims, t.type])).toEqual(ref.map((t) => [t.name, t.dims, t.type]));
    for (let i = 0; i < ref.length; i++) expect(mine[i]!.data.equals(ref[i]!.data), ref[i]!.name).toBe(true);
  });

  it("writes the reference's adapter metadata", async () => {
    const out = path.join(outDir(), "lora-sub.gguf");
    await convertPeftAdapter({ adapterDir: LORA_SUB, out, baseGguf: BASE_GGUF });
    const mine = readGgufHeader(out).metadata;
    const ref = readGgufHeader(REFERENCE).metadata;
    for (const key of ["general.architecture", "general.type", "adapter.type", "adapter.lora.alpha", "general.name", "general.quantization_version"]) {
      expect(mine.get(key), key).toEqual(ref.get(key));
    }
    // The reference's other keys (general.tags, general.base_model.count) come from the README.md model
    // card that PEFT wrote beside the adapter; the fixture does not include it, and slm does not read cards.
    expect([...mine.keys()].filter((k) => !ref.has(k))).toEqual([]);
  });

  it("gives the same file whether the head counts come from the base GGUF or the base's config.json", async () => {
    const dir = outDir();
    await convertPeftAdapter({ adapterDir: LORA_SUB, out: path.join(dir, "a.gguf"), baseGguf: BASE_GGUF });
    await convertPeftAdapter({ adapterDir: LORA_SUB, out: path.join(dir, "b.gguf"), baseConfig: BASE_CONFIG });
    expect(readFileSync(path.join(dir, "a.gguf")).equals(readFileSync(path.join(dir, "b.gguf")))).toBe(true);
  });

  it("the fixture exercises llama's q/k row permutation (lora_B of q and k moved, v untouched)", () => {
    const st = readSafetensors(path.join(LORA_SUB, "adapter_model.safetensors"));
    const raw = (n: string) => Buffer.from(readTensorF32(st, st.tensors.find((t) => t.name === `base_model.model.model.layers.0.self_attn.${n}.lora_B.weight`)!).buffer);
    const ref = new Map(tensorsOf(REFERENCE).map((t) => [t.name, t.data]));
    expect(ref.get("blk.0.attn_q.weight.lora_b")!.equals(raw("q_proj"))).toBe(false);
    expect(ref.get("blk.0.attn_k.weight.lora_b")!.equals(raw("k_proj"))).toBe(false);
    expect(ref.get("blk.0.attn_v.weight.lora_b")!.equals(raw("v_proj"))).toBe(true);
  });

  it("f16, bf16 and q8_0 outputs hold the reference values within each type's rounding, with gguf-py's type choices", async () => {
    const ref = new Map(tensorsOf(REFERENCE).map((t) => [t.name, f32s(t.data)]));
    const dir = outDir();
    const decoders: Record<string, (d: Buffer, i: number) => number> = {
      f16: (d, i) => f16BitsToF32(d.readUInt16LE(i * 2)),
      bf16: (d, i) => bf16BitsToF32(d.readUInt16LE(i * 2)),
    };
    for (const [outtype, type, tolerance] of [["f16", GGML_TYPE.F16, 2 ** -11], ["bf16", GGML_TYPE.BF16, 2 ** -8]] as const) {
      const out = path.join(dir, `${outtype}.gguf`);
      await convertPeftAdapter({ adapterDir: LORA_SUB, out, outtype, baseGguf: BASE_GGUF });
      for (const t of tensorsOf(out)) {
        expect(t.type).toBe(type);
        const want = ref.get(t.name)!;
        const off = [...want].filter((w, i) => Math.abs(decoders[outtype]!(t.data, i) - w) > Math.abs(w) * tolerance + 1e-7);
        expect(off, `${outtype} ${t.name}`).toEqual([]);
      }
    }
    const out = path.join(dir, "q8_0.gguf");
    await convertPeftAdapter({ adapterDir: LORA_SUB, out, outtype: "q8_0", baseGguf: BASE_GGUF });
    for (const t of tensorsOf(out)) {
      const want = ref.get(t.name)!;
      // lora_b rows are rank (8) long: not a multiple of Q8_0's 32-value blocks, so F16, as the script does.
      expect(t.type, t.name).toBe(t.name.endsWith(".lora_b") ? GGML_TYPE.F16 : GGML_TYPE.Q8_0);
      if (t.type !== GGML_TYPE.Q8_0) continue;
      // Half a step, plus what storing the scale as F16 (relative error ≤ 2^-11) adds at |q| ≤ 127.
      const off = [...want].filter((w, i) => {
        const d = f16BitsToF32(t.data.readUInt16LE(Math.floor(i / 32) * 34));
        return Math.abs(t.data.readInt8(Math.floor(i / 32) * 34 + 2 + (i % 32)) * d - w) > d * (0.5 + 127 * 2 ** -11);
      });
      expect(off, t.name).toEqual([]);
    }
  });

  it("rank-stabilised LoRA: writes alpha·√r, so llama.cpp's alpha/r scaling equals PEFT's alpha/√r", async () => {
    const adapter = copyAdapter((c) => (c.use_rslora = true));
    const out = path.join(outDir(), "rs.gguf");
    const r = await convertPeftAdapter({ adapterDir: adapter, out, baseGguf: BASE_GGUF });
    expect(r.alpha).toBeCloseTo(16 * Math.sqrt(8), 5);
    expect(readGgufHeader(out).metadata.get("adapter.lora.alpha")).toBeCloseTo(16 * Math.sqrt(8), 4);
  });

  it("keeps mergekit's layer norms (F32, first), adapts lm_head, and writes aLoRA invocation tokens", async () => {
    const adapter = copyAdapter((c) => (c.alora_invocation_tokens = [3, 4]));
    writeSafetensors(path.join(adapter, "adapter_model.safetensors"), {
      "base_model.model.lm_head.lora_A.weight": [8, 256],
      "base_model.model.lm_head.lora_B.weight": [320, 8],
      "base_model.model.model.layers.1.post_attention_layernorm.weight": [256],
    });
    const out = path.join(outDir(), "x.gguf");
    await convertPeftAdapter({ adapterDir: adapter, out, outtype: "f16", baseGguf: BASE_GGUF });
    expect(tensorsOf(out).map((t) => [t.name, t.dims, t.type])).toEqual([
      ["blk.1.ffn_norm.weight", [256], GGML_TYPE.F32],
      ["output.weight.lora_a", [256, 8], GGML_TYPE.F16],
      ["output.weight.lora_b", [8, 320], GGML_TYPE.F16],
    ]);
    expect(readGgufHeader(out).metadata.get("adapter.alora.invocation_tokens")).toEqual({ itemType: 4, length: 2, values: [3, 4] });
  });
});

describe("conversion errors: clear, typed, and nothing left behind", () => {
  afterEach(() => vi.unstubAllEnvs());

  async function failure(opts: Parameters<typeof convertPeftAdapter>[0]): Promise<unknown> {
    return convertPeftAdapter(opts).then(
      () => undefined,
      (e: unknown) => e,
    );
  }

  it("a truncated safetensors file is an IntegrityError", async () => {
    const adapter = copyAdapter();
    const file = path.join(adapter, "adapter_model.safetensors");
    truncateSync(file, readFileSync(file).length - 100);
    const dir = outDir();
    const err = await failure({ adapterDir: adapter, out: path.join(dir, "x.gguf"), baseGguf: BASE_GGUF });
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as Error).message).toMatch(/truncated/);
    expectNothingWritten(dir);
  });

  it("a file cut inside its header, a header that is not JSON, and stray bytes after the data are IntegrityErrors", async () => {
    const dir = outDir();
    const adapter = copyAdapter();
    const file = path.join(adapter, "adapter_model.safetensors");
    const good = readFileSync(file);
    const cases: [Buffer, RegExp][] = [
      [good.subarray(0, 200), /runs past the end/],
      [Buffer.concat([good.subarray(0, 8), Buffer.alloc(good.readUInt32LE(0), "x"), good.subarray(8 + good.readUInt32LE(0))]), /not JSON/],
      [Buffer.concat([good, Buffer.alloc(4)]), /after its last tensor/],
    ];
    for (const [bytes, message] of cases) {
      writeFileSync(file, bytes);
      const err = await failure({ adapterDir: adapter, out: path.join(dir, "x.gguf"), baseGguf: BASE_GGUF });
      expect(err).toBeInstanceOf(IntegrityError);
      expect((err as Error).message).toMatch(message);
    }
    expectNothingWritten(dir);
  });

  it("a folder that is not a PEFT adapter, and PEFT adapters that are not LoRA, are usage errors", async () => {
    const dir = outDir();
    const notPeft = path.join(FIXTURE, "hf");
    const err = await failure({ adapterDir: notPeft, out: path.join(dir, "x.gguf"), baseGguf: BASE_GGUF });
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(/not a PEFT adapter folder/);
    const ia3 = await failure({ adapterDir: copyAdapter((c) => (c.peft_type = "IA3")), out: path.join(dir, "x.gguf"), baseGguf: BASE_GGUF });
    expect((ia3 as Error).message).toMatch(/IA3 adapter; only LoRA/);
    const dora = await failure({ adapterDir: copyAdapter((c) => (c.use_dora = true)), out: path.join(dir, "x.gguf"), baseGguf: BASE_GGUF });
    expect((dora as Error).message).toMatch(/DoRA/);
    const alphas = await failure({ adapterDir: copyAdapter((c) => (c.alpha_pattern = { q_proj: 32 })), out: path.join(dir, "x.gguf"), baseGguf: BASE_GGUF });
    expect((alphas as Error).message).toMatch(/alpha_pattern/);
    expectNothingWritten(dir);
  });

  it("modules_to_save (a full lm_head) and an embedding LoRA are refused by name", async () => {
    const dir = outDir();
    const saved = copyAdapter((c) => (c.modules_to_save = ["lm_head"]));
    writeSafetensors(path.join(saved, "adapter_model.safetensors"), {
      "base_model.model.lm_head.weight": [320, 256],
      "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": [8, 256],
      "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": [256, 8],
    });
    const err = await failure({ adapterDir: saved, out: path.join(dir, "x.gguf"), baseGguf: BASE_GGUF });
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(/lm_head\.weight is a full tensor.*modules_to_save: lm_head/);
    const embed = copyAdapter();
    writeSafetensors(path.join(embed, "adapter_model.safetensors"), { "base_model.model.model.embed_tokens.lora_embedding_A": [8, 320], "base_model.model.model.embed_tokens.lora_embedding_B": [256, 8] });
    expect(((await failure({ adapterDir: embed, out: path.join(dir, "x.gguf"), baseGguf: BASE_GGUF })) as Error).message).toMatch(/token embeddings/);
    expectNothingWritten(dir);
  });

  it("an adapter for another model is refused before anything reaches llama.cpp", async () => {
    const dir = outDir();
    const other = path.join(dir, "other.gguf");
    writeLlamaGguf(other, { name: "other", vocab: 320, hidden: 128, layers: 4, heads: 4, kvHeads: 4, ffn: 256, context: 256, tied: false });
    const err = await failure({ adapterDir: LORA_SUB, out: path.join(dir, "x.gguf"), baseGguf: other });
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(/the adapter is for another model/);
    // Also when the head counts come from a config.json: the GGUF's shapes are still checked.
    const both = await failure({ adapterDir: LORA_SUB, out: path.join(dir, "x.gguf"), baseConfig: BASE_CONFIG, baseGguf: other });
    expect((both as Error).message).toMatch(/the adapter is for another model/);
    expect(readdirSync(dir)).toEqual(["other.gguf"]);
  });

  it("an lm_head LoRA on a base with tied embeddings has nothing to adapt", async () => {
    const dir = outDir();
    const tied = path.join(dir, "tied.gguf");
    writeLlamaGguf(tied, { name: "tied", vocab: 320, hidden: 256, layers: 4, heads: 8, kvHeads: 4, ffn: 768, context: 256, tied: true });
    const adapter = copyAdapter();
    writeSafetensors(path.join(adapter, "adapter_model.safetensors"), { "base_model.model.lm_head.lora_A.weight": [8, 256], "base_model.model.lm_head.lora_B.weight": [320, 8] });
    const err = await failure({ adapterDir: adapter, out: path.join(dir, "x.gguf"), baseGguf: tied });
    expect((err as Error).message).toMatch(/ties lm_head to its embeddings/);
    expect(readdirSync(dir)).toEqual(["tied.gguf"]);
  });

  it("without a base model to read head counts from, it says how to give one", async () => {
    const dir = outDir();
    const err = await failure({ adapterDir: LORA_SUB, out: path.join(dir, "x.gguf") });
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(/without knowing its base model/);
    expect((err as UsageError).hint).toMatch(/slm run <base> --lora/);
  });

  it("an architecture outside the llama family needs llama.cpp's script in the Python env: a missing env says `slm setup python`", async () => {
    const dir = outDir();
    const cfgDir = path.join(dir, "gpt2");
    const { mkdirSync } = await import("node:fs");
    mkdirSync(cfgDir);
    writeFileSync(path.join(cfgDir, "config.json"), JSON.stringify({ architectures: ["GPT2LMHeadModel"], n_head: 8, n_layer: 4 }));
    vi.stubEnv("SLM_PYTHON", "");
    vi.stubEnv("SLM_HOME", path.join(dir, "home"));
    const out = path.join(dir, "out");
    const err = await failure({ adapterDir: LORA_SUB, out: path.join(out, "x.gguf"), baseConfig: cfgDir });
    expect(err).toBeInstanceOf(MissingDependencyError);
    expect((err as MissingDependencyError).fix).toBe("slm setup python");
    expect(existsSync(path.join(out, "x.gguf"))).toBe(false);
    rmSync(dir, { recursive: true, force: true });
  });
});
