import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { slm, sandbox } from "../helpers/cli.js";

// `slm setup python` installs recipes/requirements.txt: its --help paragraph and docs/setup.md name every
// pinned package there (the ONNX exporter's onnx, onnxruntime and onnx-ir were missing from both).
const pinned = readFileSync("recipes/requirements.txt", "utf8")
  .split("\n")
  .map((l) => /^([A-Za-z0-9_.-]+)==/.exec(l.trim())?.[1])
  .filter((n): n is string => !!n);

describe("slm setup python's package list", () => {
  const sb = sandbox();
  it("names every pinned package of recipes/requirements.txt in --help and docs/setup.md", async () => {
    expect(pinned).toContain("onnx-ir");
    const help = (await slm(["setup", "--help"], sb)).stdout.replace(/\s+/g, " ");
    const docs = readFileSync("docs/setup.md", "utf8");
    for (const name of pinned) {
      expect(help, name).toMatch(new RegExp(`[ ,(]${name.replace(/[.-]/g, "\\$&")}[ ,)]`));
      expect(docs, name).toContain(`\`${name}==`);
    }
  });
});
