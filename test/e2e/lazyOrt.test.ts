import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { sandbox, slm } from "../helpers/cli.js";

/**
 * onnxruntime-node (≈300 MB of native code) is imported only when an ONNX model is loaded: what the
 * process has mapped when it exits (/proc/self/maps, Linux) shows whether its library was loaded.
 * `slm doctor` probes it, so it is the control that the check sees a load.
 */
const dir = mkdtempSync(path.join(tmpdir(), "slm-lazy-ort-"));
const preload = path.join(dir, "maps.cjs");
writeFileSync(
  preload,
  `process.on("exit", () => { const m = require("fs").readFileSync("/proc/self/maps", "utf8"); require("fs").writeFileSync(process.env.MAPS_OUT, JSON.stringify({ ort: /onnxruntime/.test(m), llama: /libllama|node-llama-cpp/.test(m) })); });`,
);

async function mapped(args: string[]): Promise<{ ort: boolean; llama: boolean; exitCode: number; all: string }> {
  const out = path.join(dir, `${args.join("_").replace(/\W+/g, "_")}.json`);
  const sb = sandbox(undefined, { NODE_OPTIONS: `--require ${preload}`, MAPS_OUT: out });
  const r = await slm(args, sb);
  return { ...(JSON.parse(readFileSync(out, "utf8")) as { ort: boolean; llama: boolean }), exitCode: r.exitCode ?? -1, all: r.all ?? "" };
}

describe.runIf(process.platform === "linux")("onnxruntime-node is loaded only for ONNX models", () => {
  it("slm --help and slm list map neither runtime", async () => {
    for (const args of [["--help"], ["list"]]) {
      const m = await mapped(args);
      expect(m.exitCode, m.all).toBe(0);
      expect({ args, ort: m.ort, llama: m.llama }).toEqual({ args, ort: false, llama: false });
    }
  });

  it("slm run of a GGUF maps llama.cpp and not onnxruntime", async () => {
    const m = await mapped(["run", "tiny-arith", "12+34", "--temperature", "0"]);
    expect(m.exitCode, m.all).toBe(0);
    expect(m.all).toContain("46");
    expect({ ort: m.ort, llama: m.llama }).toEqual({ ort: false, llama: true });
  });

  it("control: slm doctor, which probes the ONNX runtime, maps it", async () => {
    const m = await mapped(["doctor"]);
    expect(m.ort).toBe(true);
  });
});
