import { existsSync, mkdtempSync, readFileSync, readdirSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { formatBytes } from "../../src/core/format.js";
import { repoFromDir } from "../helpers/hubServer.js";
import { hubPerTest } from "../helpers/hubPerTest.js";
import { lastJson, sandbox, slm } from "../helpers/cli.js";
import { handmadeOnnxFolder } from "../helpers/onnxHandmade.js";
import { onnxPythonForTests } from "../helpers/python.js";

const REPO = "onnx-community/tiny-arith-ONNX";
const hub = hubPerTest();
const py = await onnxPythonForTests();
const registry = (home: string) => JSON.parse(readFileSync(path.join(home, "registry.json"), "utf8")).models;
const snapshotFiles = (cache: string, commit: string) => {
  const snap = path.join(cache, `models--${REPO.replace("/", "--")}`, "snapshots", commit);
  const out: string[] = [];
  const walk = (d: string, rel: string): void => {
    for (const n of readdirSync(d)) {
      const full = path.join(d, n);
      if (existsSync(full) && readdirSync(d, { withFileTypes: true }).find((e) => e.name === n)?.isDirectory()) walk(full, `${rel}${n}/`);
      else out.push(`${rel}${n}`);
    }
  };
  walk(snap, "");
  return out.sort();
};

describe.skipIf(!!py.skip)(`slm pull --format onnx${py.skip ? ` (skipped: ${py.skip})` : ""}`, () => {
  let folder: string;
  beforeAll(async () => {
    // An onnx-community-shaped repo: three variants, fp32 with external data, plus a README.
    folder = await handmadeOnnxFolder(py.python!, mkdtempSync(path.join(tmpdir(), "slm-onnx-repo-")), { fp32: "model.onnx", q8: "model_quantized.onnx", q4: "model_q4.onnx" }, ["fp32"]);
  }, 60_000);

  it("takes only the default variant (q4 on a CPU) with the configs and tokenizer, and registers format onnx", async () => {
    const s = await hub({ repos: [repoFromDir(REPO, folder)] });
    const sb = sandbox(s.url);
    const r = await slm(["pull", REPO, "--format", "onnx", "--json"], sb);
    expect(r.exitCode, r.all).toBe(0);
    const commit = s.commitOf(REPO);
    expect(snapshotFiles(sb.hubCache, commit)).toEqual(["config.json", "generation_config.json", "onnx/model_q4.onnx", "tokenizer.json", "tokenizer_config.json"]);
    const entry = registry(sb.home)[REPO];
    expect(entry).toMatchObject({ format: "onnx", onnx: { dtypes: ["q4"], base: "model" }, architecture: "LlamaForCausalLM", contextLength: 256, source: { repo: REPO, commit } });
    expect(entry.path).toBe(path.join(sb.hubCache, `models--${REPO.replace("/", "--")}`, "snapshots", commit));
    expect(lastJson(r.stdout).type).toBe("result");
  });

  it("a second pull with --dtype fp32 adds that variant and its external data to the same model", async () => {
    const s = await hub({ repos: [repoFromDir(REPO, folder)] });
    const sb = sandbox(s.url);
    expect((await slm(["pull", REPO, "--format", "onnx"], sb)).exitCode).toBe(0);
    const r = await slm(["pull", REPO, "--format", "onnx", "--dtype", "fp32"], sb);
    expect(r.exitCode, r.all).toBe(0);
    expect(r.stdout).toContain("ONNX fp32, q4");
    expect(snapshotFiles(sb.hubCache, s.commitOf(REPO))).toEqual(["config.json", "generation_config.json", "onnx/model.onnx", "onnx/model.onnx_data", "onnx/model_q4.onnx", "tokenizer.json", "tokenizer_config.json"]);
    const entry = registry(sb.home)[REPO];
    expect(entry.onnx.dtypes).toEqual(["fp32", "q4"]);
    expect(entry.files.map((f: { repoPath: string }) => f.repoPath).sort()).toEqual(["config.json", "generation_config.json", "onnx/model.onnx", "onnx/model.onnx_data", "onnx/model_q4.onnx", "tokenizer.json", "tokenizer_config.json"]);
    expect(entry.size).toBe(entry.files.reduce((a: number, f: { size: number }) => a + f.size, 0));
    // The name then takes either variant as NAME:dtype; one not pulled is named with those that are.
    const info = await slm(["info", `${REPO}:q8`], sb);
    expect(info.exitCode).toBe(2);
    expect(info.stderr).toContain(`${REPO} has no q8 variant; it has fp32, q4.`);
    // …and the registered name with a dtype pulls that variant into the same model.
    const more = await slm(["pull", `${REPO}:q8`], sb);
    expect(more.exitCode, more.all).toBe(0);
    expect(registry(sb.home)[REPO].onnx.dtypes).toEqual(["fp32", "q8", "q4"]);
  });

  it("org/repo:q8 without --format pulls that ONNX variant; a variant the repo lacks names those it has", async () => {
    const s = await hub({ repos: [repoFromDir(REPO, folder)] });
    const sb = sandbox(s.url);
    const r = await slm(["pull", `${REPO}:q8`], sb);
    expect(r.exitCode, r.all).toBe(0);
    expect(registry(sb.home)[REPO].onnx.dtypes).toEqual(["q8"]);
    const missing = await slm(["pull", REPO, "--format", "onnx", "--dtype", "fp16"], sb);
    expect(missing.exitCode).toBe(3);
    expect(missing.stderr).toContain(`${REPO} has no fp16 variant (onnx/model_fp16.onnx).`);
    expect(missing.stderr).toContain("It has fp32, q8, q4.");
    const patterns = await slm(["pull", REPO, "--format", "onnx", "--include", "onnx/*"], sb);
    expect(patterns.exitCode).toBe(2);
    expect(patterns.stderr).toContain("--include and --exclude choose the files of a --format hf pull; this is an ONNX pull.");
    const bad = await slm(["pull", REPO, "--format", "gguf", "--dtype", "q4"], sb);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain("--dtype picks an ONNX variant; it does not go with --format gguf.");
  });

  it("info describes the pulled variants (files, sizes, external data, opsets, inputs, outputs); list shows format onnx and its dtypes", async () => {
    const s = await hub({ repos: [repoFromDir(REPO, folder)] });
    const sb = sandbox(s.url);
    expect((await slm(["pull", REPO, "--format", "onnx", "--dtype", "fp32"], sb)).exitCode).toBe(0);
    expect((await slm(["pull", REPO, "--format", "onnx", "--dtype", "q4"], sb)).exitCode).toBe(0);
    const r = await slm(["info", REPO], sb);
    expect(r.exitCode, r.all).toBe(0);
    const size = (f: string) => statSync(path.join(folder, f)).size;
    const mb = formatBytes;
    expect(r.stdout).toContain(`format          onnx (Optimum / transformers.js layout, onnx/model*.onnx)\n`);
    expect(r.stdout).toContain(`loads           q4 (another with NAME:dtype or --dtype)\n`);
    // Every line fits 80 columns but the path (one word, kept whole).
    for (const line of r.stdout.split("\n").filter((l) => !l.startsWith("path "))) expect(line.length, line).toBeLessThanOrEqual(80);
    expect(r.stdout.replace(/\n {18}/g, " ")).toContain(`variants        fp32  onnx/model.onnx     ${mb(size("onnx/model.onnx"))} + model.onnx_data ${mb(size("onnx/model.onnx_data"))} external data  opset 17, com.microsoft 1\n`);
    expect(r.stdout).toContain(`                q4    onnx/model_q4.onnx  ${mb(size("onnx/model_q4.onnx"))}  opset 17, com.microsoft 1\n                  (default)\n`);
    expect(r.stdout).toContain("inputs          input_ids int64 [batch_size, sequence_length]\n                attention_mask int64 [batch_size, total_sequence_length]\n                past_key_values.{0..0}.{key} float32\n                  [batch_size, 4, past_sequence_length, 32]\n");
    expect(r.stdout).toContain("outputs         logits float32 [batch_size, sequence_length, 320]\n");
    const json = lastJson((await slm(["info", `${REPO}:fp32`, "--json"], sb)).stdout).data as { model: { dtype: string }; onnx: { variants: { dtype: string; externalData: { file: string; size: number }[] }[] } };
    expect(json.model.dtype).toBe("fp32");
    expect(json.onnx.variants.map((v) => [v.dtype, v.externalData])).toEqual([["fp32", [{ file: "onnx/model.onnx_data", size: size("onnx/model.onnx_data") }]], ["q4", []]]);
    const list = await slm(["list"], sb);
    // PARAMS from config.json's shape (no weights file to count): tiny-arith's 3.3M.
    expect(list.stdout).toMatch(new RegExp(`${REPO}\\s+onnx\\s+fp32,q4\\s+[\\d.]+ [KMG]B\\s+3\\.3M\\s`));
  });

  it("a repository without ONNX files is refused, saying what it has", async () => {
    const s = await hub({ repos: [{ id: "org/plain", files: [{ path: "config.json", data: Buffer.from("{}") }, { path: "model.safetensors", data: Buffer.from("x") }] }] });
    const sb = sandbox(s.url);
    const r = await slm(["pull", "org/plain", "--format", "onnx"], sb);
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toContain("No ONNX model (onnx/model*.onnx) in org/plain; try --format hf.");
    expect(existsSync(path.join(sb.home, "registry.json")) ? Object.keys(registry(sb.home)) : []).toEqual([]);
  });
});
