import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { formatBytes } from "../../src/core/format.js";

// The recipes' step lines ("✓ Writing fp32 (12.8 MB)") and the CLI's own summaries write sizes with one
// rule: recipes/slm_recipes/units.py must agree with src/core/format.ts on every magnitude.
const SIZES = [0, 999, 1000, 12_800_000, 13_421_772, 99_999, 100_000, 999_500, 4_100_000_000, 2 ** 40];
const python = process.env.SLM_TEST_PYTHON ?? "python3";

describe("recipes write sizes as the CLI does", () => {
  it("units.format_bytes equals formatBytes", (ctx) => {
    const code = `import json, sys; sys.path.insert(0, "recipes"); from slm_recipes.units import format_bytes; print(json.dumps([format_bytes(n) for n in ${JSON.stringify(SIZES)}]))`;
    const r = spawnSync(python, ["-c", code], { encoding: "utf8" });
    if (r.error) return ctx.skip(`no Python (${python}): ${r.error.message}`);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual(SIZES.map(formatBytes));
  });
});
