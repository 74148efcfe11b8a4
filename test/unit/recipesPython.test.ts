import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";

// The recipes' pure-Python parts (events, config validation, data rendering/masking/packing, exit codes) are
// tested by test/python with plain python3; torch, transformers and peft are not needed (test/gpu covers those).
const python = spawnSync("python3", ["--version"]);

describe.skipIf(python.status !== 0)("Python recipes without the ML stack", () => {
  it("pass test/python's unittest suite", () => {
    const r = spawnSync("python3", ["-m", "unittest", "discover", "-s", "test/python"], {
      encoding: "utf8",
      timeout: 120_000,
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1" },
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/\nOK/);
  }, 150_000);
});
