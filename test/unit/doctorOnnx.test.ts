import { mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { runDoctor } from "../../src/backends/system/doctor.js";
import { formatReport } from "../../src/commands/doctor.js";

const tmp = mkdtempSync(path.join(tmpdir(), "slm-doctor-onnx-"));
const noLlama = async (): Promise<never> => {
  throw new Error("node-llama-cpp deliberately unavailable in this test");
};
const env = () => {
  mkdirSync(path.join(tmp, "bin"), { recursive: true });
  return { HOME: tmp, PATH: path.join(tmp, "bin"), SLM_HOME: path.join(tmp, "home"), HF_HOME: path.join(tmp, "hf") };
};
/** The version of the onnxruntime-node package this checkout has, read from its own package.json. */
const installed = () => (JSON.parse(readFileSync(createRequire(import.meta.url).resolve("onnxruntime-node/package.json"), "utf8")) as { version: string }).version;

describe("slm doctor's onnx runtime line", () => {
  it("names the version slm loads, where from, and the execution providers (cpu at least)", async () => {
    const report = await runDoctor({}, { env: env(), importLlama: noLlama });
    expect(report.features.onnx).toMatchObject({ available: true, version: installed(), origin: "project" });
    expect(report.features.onnx.providers).toContain("cpu");
    const line = report.sections.features.find((c) => c.name === "onnx runtime")!;
    expect(line).toMatchObject({ status: "ok" });
    expect(line.detail).toBe(`onnxruntime-node ${installed()} (slm's node_modules) — ONNX models run on the CPU; providers: ${report.features.onnx.providers.join(", ")}`);
  });

  it("without it: a note (not a failure) with the command that installs it", async () => {
    const report = await runDoctor({}, { env: env(), importLlama: noLlama, ortStatus: async () => ({ available: false, providers: [] }) });
    const line = report.sections.features.find((c) => c.name === "onnx runtime")!;
    expect(line).toEqual({ name: "onnx runtime", status: "warn", detail: "onnxruntime-node not installed — needed only to run ONNX models", fix: "slm setup onnx" });
    expect(formatReport(report, false)).toContain("onnx runtime:\n    slm setup onnx");
  });
});
