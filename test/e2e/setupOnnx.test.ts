import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import { sandbox, slm } from "../helpers/cli.js";

const version = (JSON.parse(readFileSync(createRequire(import.meta.url).resolve("onnxruntime-node/package.json"), "utf8")) as { version: string }).version;

describe("slm setup onnx", () => {
  it("in a clone (onnxruntime-node is a devDependency) says it is already available, and installs nothing", async () => {
    const sb = sandbox();
    const r = await slm(["setup", "onnx"], sb);
    expect(r.exitCode, r.all).toBe(0);
    expect(r.stdout).toContain(`onnxruntime-node ${version} is already available (slm's own node_modules); execution providers: cpu`);
    expect(r.stdout).toContain("slm runs ONNX models on the CPU for now");
    expect(r.stdout).not.toContain("--cuda");
    const json = await slm(["setup", "onnx", "--json"], sb);
    expect(JSON.parse(json.stdout.trim().split("\n").at(-1)!).data).toMatchObject({ installed: false, available: true, version, origin: "project" });
  });

  it("has no --cuda (slm runs ONNX models on the CPU provider only): refused before anything is installed, and not offered in --help", async () => {
    const sb = sandbox();
    const r = await slm(["setup", "onnx", "--cuda"], sb);
    expect(r.exitCode, r.all).toBe(2);
    expect(r.stderr).toContain("--cuda is not an option of `slm setup onnx`: slm runs ONNX models on onnxruntime's CPU execution provider for now.");
    const help = await slm(["setup", "--help"], sb);
    expect(help.stdout).not.toMatch(/onnx: also the CUDA|CUDA 12 provider/);
    // Help text is wrapped to the terminal: compare words, not line breaks.
    expect(help.stdout.replace(/\s+/g, " ")).toContain("slm runs ONNX models on its CPU execution provider for now (no --cuda)");
  });

  it("refuses the options of other components", async () => {
    const r = await slm(["setup", "onnx", "--vulkan"], sandbox());
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain("--vulkan is not an option of `slm setup onnx`");
  });
});
