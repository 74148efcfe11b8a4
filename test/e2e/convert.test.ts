import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it, type TestContext } from "vitest";
import { readGgufHeader } from "../../src/backends/gguf/reader.js";
import type { ModelEntry } from "../../src/backends/store/types.js";
import { findExecutable, pathDirs } from "../../src/core/exec.js";
import { FIXTURE, interruptWhen, lastJson, registry, sandbox, type Sandbox, slm } from "../helpers/cli.js";
import { fixtureDifferences } from "../helpers/ggufCompare.js";
import { type HubServer, repoFromDir, startHubServer } from "../helpers/hubServer.js";
import { convertPythonForTests } from "../helpers/python.js";

const HF = path.join(FIXTURE, "hf");
const REF_F32 = path.join(FIXTURE, "gguf", "tiny-arith-f32.gguf");
const REF_F16 = path.join(FIXTURE, "gguf", "tiny-arith-f16.gguf");
const SLOW = 180_000;

/** What a failed or cancelled run must not leave: a model folder, a work folder, a registry entry. */
function expectNothingLeft(box: Sandbox): void {
  const models = path.join(box.home, "models");
  expect(existsSync(models) ? readdirSync(models) : []).toEqual([]);
  expect(Object.keys(registry(box).models)).toEqual([]);
}

describe("slm convert: input and environment errors", () => {
  let python3: string;
  beforeAll(async () => {
    python3 = (await findExecutable("python3", pathDirs()))!;
  });

  it("refuses GGUF inputs, folders that are not HF models, missing paths and unknown outtypes", async () => {
    const sb = sandbox();
    const cases: [string[], number, RegExp][] = [
      [[REF_F32], 2, /already a GGUF model/],
      [["tiny-arith"], 2, /tiny-arith is already a GGUF model/],
      [[path.join(FIXTURE, "data")], 2, /not a Hugging Face model folder \(it has no config.json\)/],
      [[path.join(FIXTURE, "lora-sub")], 2, /is a PEFT adapter folder, not a model/],
      [["./no/such/folder"], 3, /No such file or folder/],
      [[HF, "--outtype", "q4_k"], 2, /outtype/],
    ];
    for (const [args, code, message] of cases) {
      const r = await slm(["convert", ...args], sb);
      expect(r.exitCode, `${args.join(" ")}: ${r.all}`).toBe(code);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    expectNothingLeft(sb);
  });

  it("without a Python environment: exit 5 naming `slm setup python`, nothing left behind", async () => {
    const sb = sandbox(undefined, { SLM_PYTHON: "" });
    const r = await slm(["convert", HF, "--json"], sb);
    expect(r.exitCode, r.all).toBe(5);
    const err = lastJson(r.stdout).error!;
    expect(err.message).toContain("No Python environment for slm");
    expect(err.hint).toContain("slm setup python");
    expectNothingLeft(sb);
  });

  it("with a Python that lacks the converter's modules: exit 5 listing them", async () => {
    // python3 without its site-packages (-S): the standard library only, as on a fresh machine.
    const dir = mkdtempSync(path.join(tmpdir(), "slm-bare-python-"));
    const bare = path.join(dir, "python");
    writeFileSync(bare, `#!/bin/sh\nexec ${python3} -S "$@"\n`);
    chmodSync(bare, 0o755);
    const sb = sandbox(undefined, { SLM_PYTHON: bare });
    const r = await slm(["convert", HF, "--outtype", "f32"], sb);
    expect(r.exitCode, r.all).toBe(5);
    expect(r.stderr).toMatch(/Converting to GGUF \(llama.cpp's convert_hf_to_gguf.py\) needs Python modules that SLM_PYTHON \(.*\) cannot import: numpy .*torch .*transformers .*sentencepiece/s);
    expect(r.stderr).toContain("hint: Install them into that interpreter");
    expectNothingLeft(sb);
  });
});

describe("slm convert: the real conversion", () => {
  let python: string | undefined;
  let skipReason: string | undefined;
  let sb: Sandbox;
  let hub: HubServer;

  beforeAll(async () => {
    const p = await convertPythonForTests();
    python = p.python;
    skipReason = p.skip;
    if (skipReason) process.stderr.write(`[tests] skipping slm convert's real conversions: ${skipReason}\n`);
    // The fixture's HF weights as a Hub repo: its snapshot folder is named by a commit hash.
    hub = await startHubServer({ repos: [repoFromDir("acme/tiny-arith", HF)] });
    sb = sandbox(hub.url, python ? { SLM_PYTHON: python } : {});
  });
  afterAll(() => hub?.close());

  function needPython(ctx: TestContext): void {
    if (!python) ctx.skip(skipReason);
  }

  /** general.* as llama.cpp's own gguf-py reads it (from the checkout slm made in the sandbox). */
  function ggufPyGeneral(file: string): Record<string, string> {
    const root = path.join(sb.home, "llama.cpp-py");
    const gguf = path.join(root, readdirSync(root).find((d) => !d.startsWith("."))!, "gguf-py");
    const script = "import gguf, json, sys\nr = gguf.GGUFReader(sys.argv[1])\nprint(json.dumps({k: bytes(f.parts[f.data[0]]).decode() for k, f in r.fields.items() if k.startswith('general.') and f.types[0] == gguf.GGUFValueType.STRING}))";
    const out = execFileSync(python!, ["-c", script, file], { env: { ...process.env, PYTHONPATH: gguf }, encoding: "utf8" });
    return JSON.parse(out) as Record<string, string>;
  }

  /** The general.* string keys of a file, as slm's own reader sees them. */
  function general(file: string): Record<string, string> {
    return Object.fromEntries([...readGgufHeader(file).metadata].filter((e): e is [string, string] => e[0].startsWith("general.") && typeof e[1] === "string"));
  }

  it("converts a pulled Hub repo to F32 identical to llama.cpp's reference, named by the repo, registered with lineage, and it answers 12+34", async (ctx) => {
    needPython(ctx);
    const r = await slm(["convert", "acme/tiny-arith", "--outtype", "f32", "--out", "arith-f32", "--json"], sb);
    expect(r.exitCode, r.all).toBe(0);
    const data = lastJson(r.stdout).data as { model: ModelEntry; pulled: boolean; conversion: { tensors: number; architecture: string } };
    expect(data.pulled).toBe(true);
    expect(data.model.name).toBe("arith-f32");
    expect(data.model.path).toBe(path.join(sb.home, "models", "arith-f32", "arith-f32.gguf"));
    expect(data.conversion.architecture).toBe("llama");
    expect(fixtureDifferences(data.model.path, REF_F32)).toEqual([]);
    // Named by the repo, not by the snapshot's commit hash: what llama.cpp's reference says, read by llama.cpp's reader.
    expect(ggufPyGeneral(data.model.path)).toMatchObject({ "general.name": "Tiny Arith" });
    // The rest as llama.cpp derives it from the id "acme/tiny-arith" (the reference came from a folder named tiny-arith).
    expect(general(data.model.path)).toEqual({ ...general(REF_F32), "general.organization": "Acme" });
    const entry = registry(sb).models["arith-f32"]!;
    expect(entry).toMatchObject({ format: "gguf", quant: "F32", source: { type: "derived" }, architecture: "llama", contextLength: 256 });
    expect(entry.lineage[0]).toMatchObject({ from: "acme/tiny-arith", method: "convert", parameters: { outtype: "f32", tool: "convert_hf_to_gguf.py" } });
    // Progress came from the converter's own output, under the model's name.
    const events = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { type: string; id?: string; unit?: string; title?: string });
    expect(events.some((e) => e.type === "progress" && e.id === "convert:run" && e.unit === "tensors")).toBe(true);
    expect(events.find((e) => e.id === "convert:run" && e.title)?.title).toBe("Converting acme/tiny-arith to GGUF (F32)");
    const run = await slm(["run", "arith-f32", "12+34", "-t", "0"], sb);
    expect(run.exitCode, run.all).toBe(0);
    expect(run.stdout).toBe("46");
  }, SLOW);

  it("defaults to F16 named after the model the folder holds (as finetune names it), equal to the reference F16, without the converter's warnings", async (ctx) => {
    needPython(ctx);
    const r = await slm(["convert", HF], sb);
    expect(r.exitCode, r.all).toBe(0);
    expect(r.stderr).toContain("Converting tiny-arith to GGUF (F16)");
    // convert_hf_to_gguf.py's notes about the model ("WARNING:hf-to-gguf:Unknown RoPE type") are for --verbose.
    expect(r.stderr).not.toContain("WARNING:");
    const model = registry(sb).models["tiny-arith-F16"]!;
    expect(model.lineage[0]).toMatchObject({ from: HF, method: "convert" });
    expect(fixtureDifferences(model.path, REF_F16)).toEqual([]);
    expect(general(model.path)).toEqual(general(REF_F16));
    expect(general(model.path)["general.name"]).toBe("Tiny Arith");
    // The name is now taken.
    const again = await slm(["convert", HF], sb);
    expect(again.exitCode).toBe(2);
    expect(again.stderr).toContain('A model named "tiny-arith-F16" is already registered');
  }, SLOW);

  it("Ctrl+C during the conversion leaves no file and no registry entry", async (ctx) => {
    needPython(ctx);
    const box = sandbox(undefined, { SLM_PYTHON: python! });
    mkdirSync(box.home, { recursive: true });
    const child = slm(["convert", HF, "--outtype", "f32", "--json"], box);
    interruptWhen(child, /"convert:run"/);
    const r = await child;
    expect(r.exitCode, r.all).toBe(130);
    expectNothingLeft(box);
  }, SLOW);
});
