import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { writeGguf } from "../../src/backends/gguf/writer.js";
import { FIXTURE, lastJson, sandbox, slm } from "../helpers/cli.js";
import { type HubServer, startHubServer } from "../helpers/hubServer.js";

/** Catalog names against a local Hub that holds repos under the catalog's repo ids (no network). */
const F16 = path.join(FIXTURE, "..", "..", "..", "models", "tiny-arith-f16.gguf");
let server: HubServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe("catalog models through slm pull", () => {
  it("a repo that has only Q8_0 (Qwen3-0.6B-GGUF): the default pulls it, another type lists what the repo has", async () => {
    server = await startHubServer({ repos: [{ id: "Qwen/Qwen3-0.6B-GGUF", files: [{ path: "Qwen3-0.6B-Q8_0.gguf", file: F16 }] }] });
    const sb = sandbox(server.url);
    const wrong = await slm(["pull", "qwen3-0.6b:Q4_K_M"], sb);
    expect(wrong.exitCode, wrong.all).toBe(3);
    expect(wrong.stderr).toContain("Qwen/Qwen3-0.6B-GGUF has no Q4_K_M file");
    expect(wrong.stderr).toMatch(/Available quantizations: Q8_0/);
    const ok = await slm(["pull", "qwen3-0.6b", "--json"], sb);
    expect(ok.exitCode, ok.all).toBe(0);
    expect((lastJson(ok.stdout).data as { files: { repoPath: string }[] }).files.map((f) => f.repoPath)).toEqual(["Qwen3-0.6B-Q8_0.gguf"]);
  });

  it("a gated repo without HF_TOKEN: exit 4 with how to get access, before any request", async () => {
    server = await startHubServer({ repos: [{ id: "google/gemma-3-1b-it", gated: true, files: [{ path: "config.json", data: Buffer.from("{}") }] }], tokens: ["hf_test"] });
    const sb = sandbox(server.url);
    const r = await slm(["pull", "gemma-3-1b", "--format", "hf"], sb);
    expect(r.exitCode, r.all).toBe(4);
    expect(r.stderr).toContain("google/gemma-3-1b-it is gated");
    expect(r.stderr).toMatch(/hint: .*HF_TOKEN/);
    expect(server.requests).toEqual([]);
  });
});

describe("embedding models", () => {
  // A GGUF header like llama.cpp's converter writes for nomic-embed-text (no tensors needed to tell).
  const dir = mkdtempSync(path.join(tmpdir(), "slm-embed-"));
  const file = path.join(dir, "nomic-embed-text-v1.5.Q8_0.gguf");
  writeGguf(file, [["general.architecture", { type: "string", value: "nomic-bert" }], ["nomic-bert.pooling_type", { type: "u32", value: 1 }]], []);

  it.each(["run", "chat"])("slm %s refuses one clearly and says to serve it for /v1/embeddings", async (verb) => {
    const r = await slm(verb === "run" ? ["run", file, "hello"] : ["chat", file], sandbox(), { input: "hello\n" });
    expect(r.exitCode, r.all).toBe(2);
    expect(r.stderr).toContain("is an embedding model");
    expect(r.stderr).toMatch(/hint: .*slm serve .*\/v1\/embeddings/);
  });

  it("slm list --catalog names the embedding model and which weights phi-3 is", async () => {
    const r = await slm(["list", "--catalog"], sandbox());
    expect(r.exitCode, r.all).toBe(0);
    const line = (id: string) => r.stdout.split("\n").find((l) => l.startsWith(`${id} `)) ?? "";
    expect(line("phi-3-mini")).toMatch(/Phi-3\.1-mini-4k-instruct-GGUF.*June 2024 update \(Phi-3\.1\)/);
    expect(line("nomic-embed-text-v1.5")).toContain("embeddings (slm serve)");
    expect(line("gemma-3-1b")).toContain("gated (--format hf): needs HF_TOKEN");
  });
});
