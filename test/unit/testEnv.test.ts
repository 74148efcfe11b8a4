import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa } from "execa";
import { expect, it } from "vitest";
import { ROOT } from "../helpers/cli.js";

/**
 * The tests must pass whatever slm settings the person running them has: the README recommends
 * SLM_LLAMA_CPP_DIR, and a user may well have SLM_API_KEY or HF_ENDPOINT set. Runs the test file that
 * broke under SLM_LLAMA_CPP_DIR (its stand-in build was shadowed by the user's tools) with such settings.
 */
it("the llama.cpp tests pass with the user's SLM_LLAMA_CPP_DIR, SLM_HOME and HF_ENDPOINT set", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "slm-userenv-"));
  const tools = path.join(dir, "llama.cpp");
  mkdirSync(tools);
  for (const t of ["llama-quantize", "llama-imatrix", "llama-bench"]) {
    writeFileSync(path.join(tools, t), "#!/bin/sh\necho user's own build\n");
    chmodSync(path.join(tools, t), 0o755);
  }
  const r = await execa("npx", ["vitest", "run", "test/unit/llamacpp.test.ts"], {
    cwd: ROOT,
    reject: false,
    all: true,
    // CI unset: the inner run must not write the outer run's .vitest/results.json.
    env: { CI: "", SLM_LLAMA_CPP_DIR: tools, SLM_HOME: path.join(dir, "home"), HF_ENDPOINT: "http://127.0.0.1:9", SLM_API_KEY: "secret" },
  });
  expect(r.exitCode, r.all).toBe(0);
}, 120_000);
