import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const pkg = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { version: string; bin: Record<string, string> };

describe("the slm launcher", () => {
  // npx keeps a link to the bin's path in its cache (~/.npm/_npx) and does not relink it when the
  // path changes: renaming the launcher once made `npx slm` fail with "slm: not found" on every
  // machine that had run it before, CI included.
  it("keeps the path npx has cached", () => {
    expect(pkg.bin.slm).toBe("bin/slm.js");
  });

  it("runs as CommonJS (it must set UV_THREADPOOL_SIZE before an ES module entry starts the pool)", () => {
    // Node 20.19+ also require()s ES modules, so the folder's declared type is what tells them apart.
    const type = (JSON.parse(readFileSync(path.join(ROOT, "bin", "package.json"), "utf8")) as { type?: string }).type;
    expect(type).toBe("commonjs");
    const out = execFileSync(process.execPath, [path.join(ROOT, pkg.bin.slm), "--version"], { encoding: "utf8" });
    expect(out.trim()).toBe(pkg.version);
  });
});
