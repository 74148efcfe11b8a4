import { createHash, randomBytes } from "node:crypto";
import { existsSync, lstatSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { repoFromDir } from "../helpers/hubServer.js";
import { hubPerTest } from "../helpers/hubPerTest.js";
import { FIXTURE, lastJson, sandbox, slm } from "../helpers/cli.js";

const GGUF_REPO = "test/tiny-arith-GGUF";
const F16 = path.join(FIXTURE, "..", "..", "..", "models", "tiny-arith-f16.gguf");
const F32 = path.join(FIXTURE, "gguf", "tiny-arith-f32.gguf");

const hub = hubPerTest();

const ggufRepo = () => ({ id: GGUF_REPO, files: [{ path: "tiny-arith-f16.gguf", file: F16 }, { path: "tiny-arith-f32.gguf", file: F32 }, { path: "README.md", data: Buffer.from("# tiny\n") }] });
const sha256 = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");
const registry = (home: string) => (existsSync(path.join(home, "registry.json")) ? JSON.parse(readFileSync(path.join(home, "registry.json"), "utf8")).models : {});
const repoDir = (cache: string, repo: string) => path.join(cache, `models--${repo.replace("/", "--")}`);

/**
 * A large file on disk, for resume and concurrency tests (generated, not committed): a GGUF header
 * with no tensors (pull checks that a .gguf is one), then random bytes up to `bytes`.
 */
function bigFile(bytes: number): string {
  const dir = mkdtempSync(path.join(tmpdir(), "slm-big-"));
  const file = path.join(dir, "big-Q8_0.gguf");
  const header = Buffer.alloc(24);
  header.write("GGUF", 0, "latin1");
  header.writeUInt32LE(3, 4); // version; then 0 tensors and 0 metadata keys (two u64 zeros)
  const chunk = randomBytes(1 << 20);
  const parts: Buffer[] = [];
  for (let i = 0; i < bytes >> 20; i++) parts.push(chunk.map((b) => b ^ (i & 0xff)) as Buffer);
  const data = Buffer.concat(parts);
  header.copy(data, 0);
  writeFileSync(file, data);
  return file;
}

describe("slm pull", () => {
  it("downloads a GGUF into the HF cache layout, verified, and registers it", async () => {
    const s = await hub({ repos: [ggufRepo()] });
    const sb = sandbox(s.url);
    const r = await slm(["pull", `hf:${GGUF_REPO}:F16`, "--json"], sb);
    expect(r.exitCode, r.all).toBe(0);
    const result = lastJson(r.stdout);
    expect(result.type).toBe("result");
    const commit = s.commitOf(GGUF_REPO);
    const dir = repoDir(sb.hubCache, GGUF_REPO);
    expect(readFileSync(path.join(dir, "refs", "main"), "utf8")).toBe(commit);
    const link = path.join(dir, "snapshots", commit, "tiny-arith-f16.gguf");
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readlinkSync(link)).toBe(`../../blobs/${sha256(F16)}`);
    expect(sha256(link)).toBe(sha256(F16));
    // only the requested quant came down
    expect(readdirSync(path.join(dir, "blobs"))).toEqual([sha256(F16)]);
    const entry = registry(sb.home)[`${GGUF_REPO}:F16`];
    expect(entry).toMatchObject({ format: "gguf", quant: "F16", architecture: "llama", parameters: 3311872, source: { repo: GGUF_REPO, commit } });
    // NDJSON progress events precede the result
    const types = r.stdout.trim().split("\n").map((l) => JSON.parse(l).type);
    expect(types).toContain("progress");
    expect(types.at(-1)).toBe("result");

    const info = await slm(["info", `${GGUF_REPO}:F16`, "--json"], sb);
    expect(info.exitCode).toBe(0);
    expect(lastJson(info.stdout).data).toMatchObject({ gguf: { architecture: "llama", parameters: 3311872, contextLength: 256, hasChatTemplate: true } });
  });

  it("is a no-op the second time, without downloading again", async () => {
    const s = await hub({ repos: [ggufRepo()] });
    const sb = sandbox(s.url);
    expect((await slm(["pull", `${GGUF_REPO}:F16`], sb)).exitCode).toBe(0);
    const before = s.requests.filter((q) => q.path.includes("/cdn/") || q.path.includes("/resolve/")).length;
    const again = await slm(["pull", `${GGUF_REPO}:F16`], sb);
    expect(again.exitCode).toBe(0);
    expect(again.stdout).toContain("already up to date");
    expect(s.requests.filter((q) => q.path.includes("/cdn/") || q.path.includes("/resolve/")).length).toBe(before);
  });

  it("pulls --format hf with include globs, small files named by git sha1", async () => {
    const s = await hub({ repos: [repoFromDir("test/tiny-arith", path.join(FIXTURE, "hf"))] });
    const sb = sandbox(s.url);
    const r = await slm(["pull", "test/tiny-arith", "--format", "hf", "--include", "*.safetensors", "--include", "*.json"], sb);
    expect(r.exitCode, r.all).toBe(0);
    const snap = path.join(repoDir(sb.hubCache, "test/tiny-arith"), "snapshots", s.commitOf("test/tiny-arith"));
    expect(readdirSync(snap).sort()).toEqual(["config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json", "tokenizer_config.json"]);
    const cfg = readFileSync(path.join(FIXTURE, "hf", "config.json"));
    const gitSha = createHash("sha1").update(`blob ${cfg.length}\0`).update(cfg).digest("hex");
    expect(readlinkSync(path.join(snap, "config.json"))).toBe(`../../blobs/${gitSha}`);
    expect(registry(sb.home)["test/tiny-arith"]).toMatchObject({ format: "hf", path: snap });
  });

  it("picks the catalog's default quant, and lists the types a repo has when one is missing", async () => {
    const s = await hub({ repos: [ggufRepo()] });
    const sb = sandbox(s.url);
    const r = await slm(["pull", `${GGUF_REPO}:Q6_K`], sb);
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toContain("no Q6_K file");
    expect(r.stderr).toMatch(/Available quantizations: F16, F32/);
    expect(registry(sb.home)).toEqual({});
  });

  it("pulls the --format asked for: a repo without GGUF fails even after its HF pull, and a GGUF-only repo under --format hf says what it has", async () => {
    const hfFiles = repoFromDir("acme/tiny", path.join(FIXTURE, "hf")).files;
    const s = await hub({ repos: [{ id: "acme/tiny", files: hfFiles }, ggufRepo(), { id: "acme/both", files: [...hfFiles, { path: "tiny-arith-f16.gguf", file: F16 }] }] });
    const sb = sandbox(s.url);
    const noGguf = async () => {
      const r = await slm(["pull", "acme/tiny", "--format", "gguf", "--name", "gg"], sb);
      expect(r.exitCode, r.all).toBe(3);
      expect(r.stderr).toMatch(/No GGUF files in acme\/tiny; try --format hf/);
      expect(r.stderr).toMatch(/hint: It has 1 \.safetensors file, config\.json/);
    };
    await noGguf();
    expect(registry(sb.home)).toEqual({});
    expect((await slm(["pull", "acme/tiny", "--format", "hf"], sb)).exitCode).toBe(0);
    // Registered as HF weights now: --format gguf still means GGUF (it used to register "gg" as HF and exit 0).
    await noGguf();
    expect(Object.keys(registry(sb.home))).toEqual(["acme/tiny"]);

    const hfOfGguf = await slm(["pull", GGUF_REPO, "--format", "hf"], sb);
    expect(hfOfGguf.exitCode, hfOfGguf.all).toBe(3);
    expect(hfOfGguf.stderr).toContain("No Hugging Face weights (.safetensors) in test/tiny-arith-GGUF; try --format gguf.");
    expect(hfOfGguf.stderr).toContain("hint: It has 2 GGUF files (F16, F32), README.md.");
    expect(hfOfGguf.stderr).not.toMatch(/include|exclude/);

    // One repo, both formats: two models, neither overwriting the other.
    expect((await slm(["pull", "acme/both"], sb)).exitCode).toBe(0);
    const both = await slm(["pull", "acme/both", "--format", "hf"], sb);
    expect(both.exitCode, both.all).toBe(0);
    expect(registry(sb.home)).toMatchObject({ "acme/both": { format: "gguf", quant: "F16" }, "acme/both:hf": { format: "hf" } });
  });

  it("refuses a .gguf that is not GGUF: exit 7, the file deleted, nothing linked, pinned or registered", async () => {
    const s = await hub({ repos: [{ id: "acme/bad-GGUF", files: [{ path: "bad-Q8_0.gguf", data: Buffer.from("<html>not a model</html>\n".repeat(200)) }] }] });
    const sb = sandbox(s.url);
    const r = await slm(["pull", "acme/bad-GGUF"], sb);
    expect(r.exitCode, r.all).toBe(7);
    expect(r.stderr).toContain('error: bad-Q8_0.gguf in acme/bad-GGUF is not a GGUF file (it does not start with "GGUF"); nothing was registered.');
    expect(r.stderr).not.toMatch(/^warn:/m);
    expect(registry(sb.home)).toEqual({});
    expect(existsSync(repoDir(sb.hubCache, "acme/bad-GGUF"))).toBe(false);
    const pending = path.join(sb.home, "pending");
    expect(existsSync(pending) ? readdirSync(pending) : []).toEqual([]);
  });

  it("deletes corrupt bytes, registers nothing and exits with the integrity code", async () => {
    const s = await hub({ repos: [ggufRepo()], corrupt: (p) => p.endsWith(".gguf") });
    const sb = sandbox(s.url);
    const r = await slm(["pull", `${GGUF_REPO}:F16`], sb);
    expect(r.exitCode).toBe(7);
    expect(r.stderr).toMatch(/Checksum mismatch/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(registry(sb.home)).toEqual({});
    const blobs = path.join(repoDir(sb.hubCache, GGUF_REPO), "blobs");
    expect(existsSync(blobs) ? readdirSync(blobs) : []).toEqual([]);
  });

  it("resumes after kill -9 with HTTP Range, pinned to the same commit, to a verified file", async () => {
    const file = bigFile(48 << 20);
    const repo = { id: "test/big-GGUF", files: [{ path: "big-Q8_0.gguf", file }] };
    const s = await hub({ repos: [repo], throttleBytesPerSec: 8 << 20 });
    const sb = sandbox(s.url);
    const proc = slm(["pull", "test/big-GGUF:Q8_0", "--connections", "2", "--json"], sb);
    const blob = path.join(repoDir(sb.hubCache, "test/big-GGUF"), "blobs", sha256(file));
    // wait until a good part is on disk and recorded, then kill without warning
    for (let i = 0; i < 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const state = `${blob}.slm-partial.json`;
      if (existsSync(state) && JSON.parse(readFileSync(state, "utf8")).spans.reduce((a: number, x: { written: number }) => a + x.written, 0) > 12 << 20) break;
    }
    proc.kill("SIGKILL");
    await proc;
    expect(existsSync(blob)).toBe(false);
    expect(existsSync(`${blob}.slm-partial`)).toBe(true);
    expect(registry(sb.home)).toEqual({});
    const firstBytes = s.requests.length; // requests made by the killed run
    const r = await slm(["pull", "test/big-GGUF:Q8_0", "--connections", "2", "--json"], sb);
    expect(r.exitCode, r.all).toBe(0);
    // the second run asks only for what the first did not have: its ranges add up to less than the file
    const resumed = s.requests.slice(firstBytes).filter((q) => q.path.includes("/cdn/") && q.range);
    expect(resumed.length).toBeGreaterThan(0);
    const asked = resumed.reduce((a, q) => {
      const [, from, to] = /bytes=(\d+)-(\d+)/.exec(q.range!)!;
      return a + Number(to) - Number(from) + 1;
    }, 0);
    expect(asked).toBeLessThanOrEqual((48 << 20) - (12 << 20));
    expect(resumed.some((q) => Number(/bytes=(\d+)-/.exec(q.range!)![1]) % (32 << 20) !== 0)).toBe(true);
    expect(sha256(blob)).toBe(sha256(file));
    expect(lastJson(r.stdout).data).toMatchObject({ files: [{ status: "resumed" }] });
    expect(existsSync(`${blob}.slm-partial`)).toBe(false);
  });

  it("Ctrl+C stops cleanly with exit 130, keeps the partial download for a resume, and registers nothing", async () => {
    const file = bigFile(16 << 20);
    const s = await hub({ repos: [{ id: "test/big-GGUF", files: [{ path: "big-Q8_0.gguf", file }] }], throttleBytesPerSec: 4 << 20 });
    const sb = sandbox(s.url);
    const proc = slm(["pull", "test/big-GGUF:Q8_0"], sb);
    const blob = path.join(repoDir(sb.hubCache, "test/big-GGUF"), "blobs", sha256(file));
    for (let i = 0; i < 100 && !existsSync(`${blob}.slm-partial.json`); i++) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 800));
    proc.kill("SIGINT");
    const r = await proc;
    expect(r.exitCode).toBe(130);
    expect(r.stderr).toMatch(/run the same `slm pull` again to resume/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(blob)).toBe(false);
    const state = JSON.parse(readFileSync(`${blob}.slm-partial.json`, "utf8"));
    expect(state.spans[0].written).toBeGreaterThan(0);
    expect(registry(sb.home)).toEqual({});
    const again = await slm(["pull", "test/big-GGUF:Q8_0"], sb);
    expect(again.exitCode, again.all).toBe(0);
    expect(again.stderr).toMatch(/resumed at \d+(\.\d+)? MB, verified/);
    expect(sha256(blob)).toBe(sha256(file));
  });

  it("retries 5xx answers and dropped connections within one run", async () => {
    const s = await hub({ repos: [ggufRepo()], failFirst: { status: 503, times: 2 }, dropAfterBytes: 1 << 20 });
    const sb = sandbox(s.url);
    const r = await slm(["pull", `${GGUF_REPO}:F32`], sb);
    expect(r.exitCode, r.all).toBe(0);
    const blob = path.join(repoDir(sb.hubCache, GGUF_REPO), "blobs", sha256(F32));
    expect(sha256(blob)).toBe(sha256(F32));
  });

  it("works offline from the cache, and says what is missing otherwise", async () => {
    const s = await hub({ repos: [ggufRepo()] });
    const sb = sandbox(s.url);
    expect((await slm(["pull", `${GGUF_REPO}:F16`], sb)).exitCode).toBe(0);
    await s.close();
    const offline = { ...sb, env: { ...sb.env, HF_HUB_OFFLINE: "1", HF_ENDPOINT: "http://127.0.0.1:9" } };
    const again = await slm(["pull", `${GGUF_REPO}:F16`], offline);
    expect(again.exitCode, again.all).toBe(0);
    const other = await slm(["pull", "test/not-cached-GGUF:Q8_0"], offline);
    expect(other.exitCode).toBe(3);
    expect(other.stderr).toMatch(/HF_HUB_OFFLINE/);
  });

  it("explains gated repos, and uses HF_TOKEN without ever printing it", async () => {
    const token = "hf_secretTOKEN1234567890";
    const s = await hub({ repos: [{ ...ggufRepo(), gated: true }], tokens: [token] });
    const denied = await slm(["pull", `${GGUF_REPO}:F16`], sandbox(s.url));
    expect(denied.exitCode).toBe(4);
    expect(denied.stderr).toMatch(/licence/);
    expect(denied.stderr).toMatch(/HF_TOKEN/);
    const sb = sandbox(s.url, { HF_TOKEN: token });
    const ok = await slm(["pull", `${GGUF_REPO}:F16`, "--json", "--verbose"], sb);
    expect(ok.exitCode, ok.all).toBe(0);
    expect(ok.all).not.toContain(token);
    expect(readFileSync(path.join(sb.home, "registry.json"), "utf8")).not.toContain(token);
  });

  it("answers an unknown repo with not-found", async () => {
    const s = await hub({ repos: [ggufRepo()] });
    const r = await slm(["pull", "test/nope-GGUF:Q8_0"], sandbox(s.url));
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toMatch(/not found/i);
  });

  it("refuses a hostile file name and writes nothing outside the cache", async () => {
    const s = await hub({ repos: [{ id: "test/evil-GGUF", files: [{ path: "../../../evil-Q8_0.gguf", data: Buffer.from("GGUF-evil") }] }] });
    const sb = sandbox(s.url);
    const r = await slm(["pull", "test/evil-GGUF:Q8_0"], sb);
    expect(r.exitCode).toBe(7);
    expect(r.stderr).toMatch(/unsafe file name/);
    expect(existsSync(path.join(sb.hubCache, "..", "evil-Q8_0.gguf"))).toBe(false);
    expect(existsSync(path.join(sb.hubCache, "evil-Q8_0.gguf"))).toBe(false);
    expect(registry(sb.home)).toEqual({});
  });

  it("two concurrent pulls of one model end with one good copy, downloaded once", async () => {
    const file = bigFile(24 << 20);
    const s = await hub({ repos: [{ id: "test/big-GGUF", files: [{ path: "big-Q8_0.gguf", file }] }], throttleBytesPerSec: 16 << 20 });
    const sb = sandbox(s.url);
    const [a, b] = await Promise.all([slm(["pull", "test/big-GGUF:Q8_0"], sb), slm(["pull", "test/big-GGUF:Q8_0"], sb)]);
    expect(a.exitCode, a.all).toBe(0);
    expect(b.exitCode, b.all).toBe(0);
    const blobs = readdirSync(path.join(repoDir(sb.hubCache, "test/big-GGUF"), "blobs"));
    expect(blobs).toEqual([sha256(file)]);
    expect(sha256(path.join(repoDir(sb.hubCache, "test/big-GGUF"), "blobs", blobs[0]!))).toBe(sha256(file));
    expect(Object.keys(registry(sb.home))).toEqual(["test/big-GGUF:Q8_0"]);
    const bodies = s.requests.filter((q) => q.method === "GET" && (q.path.includes("/cdn/") || q.path.includes("/resolve/")));
    // one process downloads (one or two ranges after the redirect), the other waits and reuses the blob
    expect(bodies.length).toBeLessThanOrEqual(2);
  });
});

describe("list, info and rm", () => {
  it("round-trips: rm deletes the blob and the snapshot link, and list no longer shows it", async () => {
    const s = await hub({ repos: [ggufRepo()] });
    const sb = sandbox(s.url);
    expect((await slm(["pull", `${GGUF_REPO}:F16`], sb)).exitCode).toBe(0);
    expect((await slm(["pull", `${GGUF_REPO}:F32`], sb)).exitCode).toBe(0);
    const list = await slm(["list", "--json"], sb);
    const names = (lastJson(list.stdout).data as { models: { name: string }[] }).models.map((m) => m.name);
    expect(names).toEqual(expect.arrayContaining(["tiny-arith", `${GGUF_REPO}:F16`, `${GGUF_REPO}:F32`]));
    const plain = await slm(["list"], sb);
    expect(plain.stdout).toMatch(/test\/tiny-arith-GGUF:F16\s+gguf\s+F16/);

    const rm = await slm(["rm", `${GGUF_REPO}:F16`], sb);
    expect(rm.exitCode, rm.all).toBe(0);
    const dir = repoDir(sb.hubCache, GGUF_REPO);
    const commit = s.commitOf(GGUF_REPO);
    expect(existsSync(path.join(dir, "blobs", sha256(F16)))).toBe(false);
    expect(existsSync(path.join(dir, "snapshots", commit, "tiny-arith-f16.gguf"))).toBe(false);
    // the other quant of the same repo is untouched
    expect(statSync(path.join(dir, "snapshots", commit, "tiny-arith-f32.gguf")).size).toBe(statSync(F32).size);
    const after = (lastJson((await slm(["list", "--json"], sb)).stdout).data as { models: { name: string }[] }).models.map((m) => m.name);
    expect(after).not.toContain(`${GGUF_REPO}:F16`);
    expect(after).toContain(`${GGUF_REPO}:F32`);
    const info = await slm(["info", `${GGUF_REPO}:F16`], sb);
    expect(info.exitCode).toBe(3);
    expect(info.stderr).toContain("slm pull");
  });

  it("info works offline on the built-in model and on a local file", async () => {
    const sb = sandbox();
    const r = await slm(["info", "tiny-arith", "--json"], sb);
    expect(r.exitCode).toBe(0);
    expect(lastJson(r.stdout).data).toMatchObject({ model: { name: "tiny-arith", source: { type: "builtin" } }, gguf: { architecture: "llama", parameters: 3311872, fileType: "F16", tokenizer: "llama", vocabSize: 320 } });
    const local = await slm(["info", F32], sb);
    expect(local.exitCode).toBe(0);
    expect(local.stdout).toMatch(/file type\s+F32/);
  });

  it("gives clear errors for a missing file and a corrupt GGUF, without a stack trace", async () => {
    const sb = sandbox();
    const missing = await slm(["info", "/nonexistent/model.gguf"], sb);
    expect(missing.exitCode).toBe(3);
    const dir = mkdtempSync(path.join(tmpdir(), "slm-bad-"));
    const bad = path.join(dir, "truncated.gguf");
    writeFileSync(bad, readFileSync(F16).subarray(0, 300));
    const r = await slm(["info", bad], sb);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/not a readable GGUF/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    const rm = await slm(["rm", "nothing-here"], sb);
    expect(rm.exitCode).toBe(3);
  });
});
