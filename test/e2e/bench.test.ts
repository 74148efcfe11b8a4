import { describe, expect, it } from "vitest";
import { lastJson, sandbox, slm } from "../helpers/cli.js";

/**
 * `slm bench` on the built binary with the built-in tiny model. Only sanity is checked (counts,
 * positive means, the settings reported): speed is measured in bench/inference.ts, never asserted here.
 * The sandbox sets SLM_THREADS=1, so the default thread count is known.
 */

interface BenchJson {
  model: { name: string; description: string; sizeBytes: number; parameters: number };
  backend: string;
  settings: { threads: number; contextSize: number; batchSize: number; gpuLayers: number; api: string; libuvThreads: number; engine: string };
  tests: { name: string; kind: string; tokens: number; repetitions: number; samples: number[]; samplesMs: number[]; mean: number; stddev: number }[];
}

describe("slm bench", () => {
  const sb = sandbox();

  it("measures pp and tg with the sizes and repetitions asked for (--json)", async () => {
    const r = await slm(["bench", "tiny-arith", "-p", "64", "-n", "16", "-r", "2", "--json"], sb);
    expect(r.exitCode, r.all).toBe(0);
    const res = lastJson(r.stdout);
    expect(res.type).toBe("result");
    const data = res.data as BenchJson;
    expect(data.tests.map((t) => [t.name, t.kind, t.tokens, t.repetitions])).toEqual([
      ["pp64", "pp", 64, 2],
      ["tg16", "tg", 16, 2],
    ]);
    for (const t of data.tests) {
      expect(t.samples).toHaveLength(2);
      expect(t.samplesMs).toHaveLength(2);
      for (const s of [...t.samples, ...t.samplesMs]) expect(s).toBeGreaterThan(0);
      expect(t.mean).toBeGreaterThan(0);
      expect(Number.isFinite(t.mean)).toBe(true);
      expect(t.stddev).toBeGreaterThanOrEqual(0);
    }
    expect(data.settings.threads).toBe(1);
    expect(data.settings.contextSize).toBeGreaterThanOrEqual(65);
    expect(data.settings.batchSize).toBeGreaterThan(0);
    expect(data.settings.gpuLayers).toBe(0);
    expect(data.settings.api).toBe("decode");
    // bin/slm.js gives inference commands a one-thread libuv pool (2× faster multi-thread generation).
    expect(data.settings.libuvThreads).toBe(1);
    expect(["localBuild", "prebuilt"]).toContain(data.settings.engine);
    expect(data.backend).toBe("CPU");
    expect(data.model.parameters).toBeGreaterThan(3_000_000);
    // Progress went out as events before the result.
    const events = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { type: string; id?: string });
    expect(events.some((e) => e.type === "progress" && e.id === "bench:tg16")).toBe(true);
  });

  it("keeps a UV_THREADPOOL_SIZE the user set", async () => {
    const r = await slm(["bench", "tiny-arith", "-p", "0", "-n", "4", "-r", "1", "--json"], sb, { env: { ...sb.env, UV_THREADPOOL_SIZE: "3" } });
    expect(r.exitCode, r.all).toBe(0);
    expect((lastJson(r.stdout).data as BenchJson).settings.libuvThreads).toBe(3);
  });

  it("prints llama-bench's table and the settings it used; -p 0 skips the prompt test; --threads is honoured", async () => {
    const r = await slm(["bench", "tiny-arith", "-p", "0", "-n", "8", "-r", "1", "--threads", "1", "--batch", "32"], sb);
    expect(r.exitCode, r.all).toBe(0);
    // Plain progress (not a terminal) counts repetitions as repetitions, not "steps".
    expect(r.stderr).toMatch(/: 100% {2}1\/1 repetitions/);
    const lines = r.stdout.split("\n");
    expect(lines[0]).toMatch(/^\| model +\| +size \| +params \| backend +\| threads \| +test \| +t\/s \|$/);
    expect(lines[1]).toMatch(/^\| -+ \| -+: \|/);
    expect(r.stdout).toMatch(/\| +1 \| +tg8 \| +\d+\.\d\d ± \d+\.\d\d \|/);
    expect(r.stdout).not.toMatch(/pp\d/);
    expect(r.stdout).toMatch(/threads 1, context \d+, batch 32, GPU layers 0/);
  });

  it("runs through node-llama-cpp's public sequence API with --api sequence", async () => {
    const r = await slm(["bench", "tiny-arith", "-p", "16", "-n", "4", "-r", "1", "--api", "sequence", "--json"], sb);
    expect(r.exitCode, r.all).toBe(0);
    const data = lastJson(r.stdout).data as BenchJson;
    expect(data.settings.api).toBe("sequence");
    expect(data.tests.map((t) => t.name)).toEqual(["pp16", "tg4"]);
    for (const t of data.tests) expect(t.mean).toBeGreaterThan(0);
  });

  it("rejects bad flags with exit code 2, before loading anything", async () => {
    const cases = [
      ["-r", "0"],
      ["-p", "abc"],
      ["-p", "0", "-n", "0"],
      ["-p", "64", "--ctx", "32"],
      ["--threads", "0"],
      ["--batch", "-5"],
      ["--api", "fast"],
      ["--gpu", "tpu"],
    ];
    for (const args of cases) {
      const r = await slm(["bench", "tiny-arith", ...args], sb);
      expect(r.exitCode, `${args.join(" ")}: ${r.all}`).toBe(2);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    const j = await slm(["bench", "tiny-arith", "-p", "0", "-n", "0", "--json"], sb);
    expect(j.exitCode).toBe(2);
    expect(lastJson(j.stdout)).toMatchObject({ type: "error", error: { exitCode: 2 } });
  });

  it("exits 3 for a model that does not exist", async () => {
    for (const ref of ["no-such-model", "./no-such-file.gguf"]) {
      const r = await slm(["bench", ref, "-p", "8", "-n", "2", "-r", "1"], sb);
      expect(r.exitCode, r.all).toBe(3);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });
});
