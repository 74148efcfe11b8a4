import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { convertModules, parseTensorLine, parseWriteProgress } from "../../src/backends/convert/convert.js";
import { inspectHfFolder, safetensorsShapes } from "../../src/backends/convert/hfFolder.js";
import { parseOuttype } from "../../src/backends/convert/model.js";
import { explainInstallError } from "../../src/backends/python/setup.js";
import { ExternalError, MissingDependencyError, NetworkError, NotFoundError, UsageError } from "../../src/core/errors.js";
import { FIXTURE } from "../helpers/cli.js";

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(path.join(tmpdir(), "slm-convert-unit-"));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function safetensors(file: string, header: Record<string, unknown>): void {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(file, Buffer.concat([len, json]));
}

describe("inspectHfFolder", () => {
  it("reads the fixture's config and safetensors headers: 39 tensors, 3,311,872 weights", () => {
    const info = inspectHfFolder(path.join(FIXTURE, "hf"));
    expect(info).toMatchObject({ architecture: "LlamaForCausalLM", modelType: "llama", contextLength: 256, format: "safetensors", tensors: 39, parameters: 3_311_872, sentencepiece: true });
    expect(info.weights).toEqual([path.join(FIXTURE, "hf", "model.safetensors")]);
  });

  it("counts the parts of a sharded model, and ignores __metadata__", () => {
    const dir = path.join(tmp, "sharded");
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, "config.json"), JSON.stringify({ architectures: ["Qwen2ForCausalLM"], max_position_embeddings: 32768 }));
    safetensors(path.join(dir, "model-00001-of-00002.safetensors"), { __metadata__: { format: "pt" }, a: { dtype: "BF16", shape: [4, 8], data_offsets: [0, 64] } });
    safetensors(path.join(dir, "model-00002-of-00002.safetensors"), { b: { dtype: "BF16", shape: [8], data_offsets: [0, 16] }, c: { dtype: "F32", shape: [], data_offsets: [16, 20] } });
    const info = inspectHfFolder(dir);
    expect(info).toMatchObject({ architecture: "Qwen2ForCausalLM", tensors: 3, parameters: 32 + 8 + 1, sentencepiece: false });
    expect(info.weights.map((w) => path.basename(w))).toEqual(["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]);
  });

  it("refuses what is not a model folder, each with its own reason", () => {
    expect(() => inspectHfFolder(path.join(tmp, "missing"))).toThrow(NotFoundError);
    expect(() => inspectHfFolder(path.join(FIXTURE, "data"))).toThrow(/has no config.json/);
    const adapter = path.join(tmp, "adapter-like");
    mkdirSync(adapter, { recursive: true });
    writeFileSync(path.join(adapter, "config.json"), "{}");
    writeFileSync(path.join(adapter, "adapter_config.json"), "{}");
    let err: unknown;
    try {
      inspectHfFolder(adapter);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).message).toContain("has no model weights");
    expect((err as UsageError).hint).toContain("--lora");
    const badJson = path.join(tmp, "bad-json");
    mkdirSync(badJson, { recursive: true });
    writeFileSync(path.join(badJson, "config.json"), "{nope");
    expect(() => inspectHfFolder(badJson)).toThrow(/not valid JSON/);
  });

  it("refuses a truncated or foreign safetensors file", () => {
    const f = path.join(tmp, "short.safetensors");
    writeFileSync(f, Buffer.from([1, 2, 3]));
    expect(() => safetensorsShapes(f)).toThrow(/too short/);
    const g = path.join(tmp, "huge.safetensors");
    const b = Buffer.alloc(16);
    b.writeBigUInt64LE(10_000n);
    writeFileSync(g, b);
    expect(() => safetensorsShapes(g)).toThrow(/bad header length/);
  });
});

describe("the converter's output", () => {
  it("recognises its per-tensor log lines", () => {
    expect(parseTensorLine("INFO:hf-to-gguf:blk.0.attn_q.weight,          torch.float32 --> F32, shape = {256, 256}")).toBe("blk.0.attn_q.weight");
    expect(parseTensorLine("INFO:hf-to-gguf:token_embd.weight,    torch.bfloat16 --> F16, shape = {256, 320}")).toBe("token_embd.weight");
    expect(parseTensorLine("INFO:hf-to-gguf:Loading model: hf")).toBeUndefined();
    expect(parseTensorLine("INFO:gguf.gguf_writer:Writing the following files:")).toBeUndefined();
  });

  it("reads gguf-py's tqdm bar as bytes", () => {
    expect(parseWriteProgress("Writing:  45%|████▌     | 6.00M/13.3M [00:00<00:00, 60.0Mbyte/s]")).toEqual({ current: 6e6, total: 13.3e6 });
    expect(parseWriteProgress("Writing: 100%|██████████| 1.20G/1.20G [00:05<00:00, 240Mbyte/s]")).toEqual({ current: 1.2e9, total: 1.2e9 });
    expect(parseWriteProgress("Writing:   0%|          | 0.00/13.3M [00:00<?, ?byte/s]")).toEqual({ current: 0, total: 13.3e6 });
    expect(parseWriteProgress("Shard (1/2): 50%")).toBeUndefined();
  });

  it("asks for sentencepiece only for a tokenizer.model", () => {
    expect(convertModules({ sentencepiece: true })).toContain("sentencepiece");
    expect(convertModules({ sentencepiece: false })).not.toContain("sentencepiece");
    expect(convertModules({ sentencepiece: false })).toEqual(expect.arrayContaining(["torch", "numpy", "transformers", "yaml", "tqdm", "gguf"]));
  });

  it("accepts the four outtypes, in any case, f16 by default", () => {
    expect(parseOuttype(undefined)).toBe("f16");
    expect(parseOuttype("Q8_0")).toBe("q8_0");
    expect(() => parseOuttype("q4_k_m")).toThrow(UsageError);
  });
});

describe("explainInstallError", () => {
  const failure = (tail: string) => new ExternalError("pip install exited with code 1", { command: "python", args: [], stderrTail: tail });

  it("turns pip's and uv's connection failures into a NetworkError that says nothing was installed", () => {
    for (const tail of [
      "WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None)) after connection broken by 'NewConnectionError('<pip._vendor.urllib3.connection.HTTPSConnection object at 0x7f>: Failed to establish a new connection: [Errno -3] Temporary failure in name resolution')': /simple/torch/\nERROR: Could not find a version that satisfies the requirement torch==2.11.0 (from versions: none)\nERROR: No matching distribution found for torch==2.11.0",
      "WARNING: Retrying (Retry(total=0)) after connection broken by 'ProxyError('Cannot connect to proxy.', NewConnectionError('...: Failed to establish a new connection: [Errno 111] Connection refused'))': /simple/torch/",
      "error: Failed to fetch: `https://pypi.org/simple/torch/`\n  Caused by: Request failed after 3 retries\n  Caused by: error sending request for url (https://pypi.org/simple/torch/)\n  Caused by: dns error: failed to lookup address information",
    ]) {
      const e = explainInstallError(failure(tail));
      expect(e).toBeInstanceOf(NetworkError);
      expect((e as NetworkError).exitCode).toBe(4);
      expect((e as NetworkError).hint).toContain("Nothing was installed");
    }
  });

  it("names python3-venv when ensurepip is missing, and leaves other failures alone", () => {
    const venv = explainInstallError(failure("The virtual environment was not created successfully because ensurepip is not available."));
    expect(venv).toBeInstanceOf(MissingDependencyError);
    expect((venv as MissingDependencyError).fix).toBe("apt install python3-venv");
    const other = failure("ERROR: Could not find a version that satisfies the requirement torch==2.11.0 (from versions: 2.13.0+cpu)");
    expect(explainInstallError(other)).toBe(other);
    const plain = new Error("boom");
    expect(explainInstallError(plain)).toBe(plain);
  });
});
