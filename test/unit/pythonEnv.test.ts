import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { missingPythonModules, requirePythonModules, resolvePython, venvPython } from "../../src/backends/python/env.js";
import { probeStack } from "../../src/backends/python/stack.js";
import { MissingDependencyError } from "../../src/core/errors.js";
import { findExecutable, pathDirs } from "../../src/core/exec.js";

const posix = process.platform !== "win32";
let tmp: string;
let python3: string;

beforeAll(async () => {
  tmp = mkdtempSync(path.join(tmpdir(), "slm-pyenv-"));
  const found = await findExecutable("python3", pathDirs());
  if (!found) throw new Error("these tests need python3 on PATH");
  python3 = found;
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function script(file: string, body: string): string {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, `#!/bin/sh\n${body}\n`);
  chmodSync(file, 0o755);
  return file;
}

async function rejection(p: Promise<unknown>): Promise<MissingDependencyError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(MissingDependencyError);
  return err as MissingDependencyError;
}

describe("resolvePython", () => {
  const env = (extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv => ({ PATH: process.env.PATH, SLM_HOME: path.join(tmp, "home-none"), ...extra });

  it("uses SLM_PYTHON, looked up on PATH when it is a bare name", async () => {
    expect(await resolvePython(env({ SLM_PYTHON: "python3" }))).toEqual({ python: python3, source: "SLM_PYTHON" });
    expect(await resolvePython(env({ SLM_PYTHON: python3 }))).toEqual({ python: python3, source: "SLM_PYTHON" });
  });

  it("refuses an SLM_PYTHON that does not exist, instead of falling back to another interpreter", async () => {
    const bad = path.join(tmp, "nope", "python");
    const venvHome = path.join(tmp, "home-with-venv");
    if (posix) script(venvPython(path.join(venvHome, "venv")), "exit 0");
    const err = await rejection(resolvePython(env({ SLM_PYTHON: bad, SLM_HOME: venvHome })));
    expect(err.exitCode).toBe(5);
    expect(err.message).toContain(bad);
    expect(err.fix).toBe("slm setup python");
  });

  it.runIf(posix)("uses $SLM_HOME/venv when SLM_PYTHON is not set", async () => {
    const home = path.join(tmp, "home-venv");
    const py = script(venvPython(path.join(home, "venv")), "exit 0");
    expect(await resolvePython(env({ SLM_HOME: home }))).toEqual({ python: py, source: "venv" });
  });

  it("without either, names `slm setup python` and where the venv would be", async () => {
    const err = await rejection(resolvePython(env({})));
    expect(err.exitCode).toBe(5);
    expect(err.message).toContain(path.join(tmp, "home-none", "venv"));
    expect(err.hint).toContain("slm setup python");
    expect(err.hint).toContain("SLM_PYTHON");
  });
});

describe("requirePythonModules (real python3)", () => {
  it("passes when every module imports", async () => {
    await requirePythonModules({ python: python3, source: "SLM_PYTHON" }, ["json", "os.path"], "Testing");
  });

  it("lists exactly the modules that fail to import, why, and how to get them", async () => {
    const err = await rejection(requirePythonModules({ python: python3, source: "SLM_PYTHON" }, ["json", "no_such_module_xyz", "yaml_nope"], "Fine-tuning"));
    expect(err.message).toMatch(/^Fine-tuning needs Python modules that SLM_PYTHON \(.*\) cannot import: no_such_module_xyz \(ModuleNotFoundError: No module named 'no_such_module_xyz'\), yaml_nope/);
    expect(err.message).not.toContain("json");
    expect(err.hint).toContain("Install them into that interpreter (no_such_module_xyz yaml_nope)");
    expect(err.fix).toBe("slm setup python");
  });

  it("reports a module that is present but broken as missing, with its error", async () => {
    const dir = path.join(tmp, "pkgs");
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, "broken_mod.py"), "raise ImportError('libcudart.so.12: cannot open shared object file')\n");
    const missing = await missingPythonModules({ python: python3, source: "venv" }, ["broken_mod", "json"], { extraEnv: { PYTHONPATH: dir } });
    expect(missing).toEqual({ broken_mod: "ImportError: libcudart.so.12: cannot open shared object file" });
  });

  it.runIf(posix)("says when the interpreter does not run at all", async () => {
    const py = script(path.join(tmp, "dead", "python"), "echo 'error while loading shared libraries: libpython3.12.so' >&2\nexit 127");
    const err = await rejection(requirePythonModules({ python: py, source: "venv" }, ["torch"], "Fine-tuning"));
    expect(err.message).toContain("does not run");
    expect(err.message).toContain("libpython3.12.so");
    expect(err.hint).toContain("slm setup python --force");
  });
});

describe("probeStack (real python3)", () => {
  it("reports the interpreter's version and each module, present or not", async () => {
    const dir = path.join(tmp, "fake-stack");
    mkdirSync(dir, { recursive: true });
    // Stand-ins with versions, so both branches (present with a version, missing with why) are exercised.
    writeFileSync(path.join(dir, "peft.py"), "__version__ = '0.21.0'\n");
    writeFileSync(path.join(dir, "accelerate.py"), "__version__ = '1.15.0'\n");
    const s = await probeStack({ python: python3, source: "SLM_PYTHON" }, { extraEnv: { PYTHONPATH: dir } });
    expect(s.error).toBeUndefined();
    expect(s.version).toMatch(/^3\.\d+\.\d+$/);
    expect(s.modules.peft).toEqual({ version: "0.21.0" });
    expect(s.modules.accelerate).toEqual({ version: "1.15.0" });
    const names = s.missing.map((m) => m.name);
    expect(names).not.toContain("peft");
    for (const m of names) expect(s.modules[m]?.error).toMatch(/Error/);
    expect(Object.keys(s.modules)).toEqual(expect.arrayContaining(["torch", "transformers", "peft", "accelerate", "safetensors", "sentencepiece", "bitsandbytes"]));
    // bitsandbytes is optional: reported, never "missing".
    expect(names).not.toContain("bitsandbytes");
  });
});
