import { readFileSync, readdirSync, statSync, truncateSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FIXTURE, lastJson, sandbox, slm } from "../helpers/cli.js";
import { type HubServer, repoFromDir, startHubServer } from "../helpers/hubServer.js";
import { LORA_SUB, copyAdapter } from "../helpers/peftAdapter.js";

/** The converted adapters in a sandbox's $SLM_HOME/adapters/<sha256>/. */
function cachedAdapters(home: string): string[] {
  const root = path.join(home, "adapters");
  return readdirSync(root).flatMap((sha) => readdirSync(path.join(root, sha)).map((f) => path.join(root, sha, f)));
}

describe("--lora with a PEFT adapter folder (converted in TypeScript, once)", () => {
  const sb = sandbox();

  it("slm run answers 57-23 = 34 with the fixture's PEFT adapter, and reuses the conversion the next time", async () => {
    const r = await slm(["run", "tiny-arith", "57-23", "--temperature", "0", "--lora", LORA_SUB], sb);
    expect(r.exitCode, r.all).toBe(0);
    expect(r.stdout.trim()).toBe("34");
    expect(r.stderr).toMatch(/Converted the LoRA adapter/);
    const [gguf, ...more] = cachedAdapters(sb.home);
    expect(more).toEqual([]);
    expect(path.basename(path.dirname(gguf!))).toMatch(/^[0-9a-f]{64}$/);
    const mtime = statSync(gguf!).mtimeMs;

    const again = await slm(["run", "tiny-arith", "61-17", "-t", "0", "--lora", `${LORA_SUB}:1`], sb);
    expect(again.exitCode, again.all).toBe(0);
    expect(again.stdout.trim()).toBe("44");
    expect(again.stderr).toMatch(/converted before/);
    expect(cachedAdapters(sb.home)).toEqual([gguf]);
    expect(statSync(gguf!).mtimeMs).toBe(mtime);
  });

  it("a scale of 0 turns the adapter off: the base model's answer", async () => {
    const base = await slm(["run", "tiny-arith", "57-23", "-t", "0"], sb);
    const r = await slm(["run", "tiny-arith", "57-23", "-t", "0", "--lora", `${LORA_SUB}:0`], sb);
    expect(r.exitCode, r.all).toBe(0);
    expect(r.stdout).toBe(base.stdout);
    expect(r.stdout.trim()).not.toBe("34");
  });

  it("slm chat takes the folder too", async () => {
    const r = await slm(["chat", "tiny-arith", "-t", "0", "--lora", LORA_SUB], sb, { input: "57-23\n" });
    expect(r.exitCode, r.all).toBe(0);
    expect(r.stdout.trim()).toBe("34");
  });

  it("errors: not an adapter (2), a truncated adapter (7), a missing one (3); no stack traces, nothing cached", async () => {
    const fresh = sandbox();
    const notPeft = await slm(["run", "tiny-arith", "1+1", "--lora", path.join(FIXTURE, "hf")], fresh);
    expect(notPeft.exitCode).toBe(2);
    expect(notPeft.stderr).toMatch(/not a PEFT adapter folder/);
    const broken = copyAdapter();
    const weights = path.join(broken, "adapter_model.safetensors");
    truncateSync(weights, readFileSync(weights).length - 1000);
    const truncated = await slm(["run", "tiny-arith", "1+1", "--lora", broken, "--json"], fresh);
    expect(truncated.exitCode).toBe(7);
    expect(lastJson(truncated.stdout).error?.message).toMatch(/truncated/);
    const missing = await slm(["run", "tiny-arith", "1+1", "--lora", "./no/such-adapter"], fresh);
    expect(missing.exitCode).toBe(3);
    for (const r of [notPeft, truncated, missing]) expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(() => cachedAdapters(fresh.home)).toThrow();
  });
});

describe("--lora with a Hub repo of a PEFT adapter (local Hub server)", () => {
  let hub: HubServer;
  beforeAll(async () => {
    hub = await startHubServer({ repos: [repoFromDir("tester/tiny-arith-lora-sub", LORA_SUB), repoFromDir("tester/not-an-adapter", path.join(FIXTURE, "hf"))] });
  });
  afterAll(async () => hub?.close());

  it("downloads the adapter into the HF cache, converts it, answers 34, and does not register it as a model", async () => {
    const sb = sandbox(hub.url);
    const r = await slm(["run", "tiny-arith", "57-23", "-t", "0", "--lora", "tester/tiny-arith-lora-sub"], sb);
    expect(r.exitCode, r.all).toBe(0);
    expect(r.stdout.trim()).toBe("34");
    const snapshot = path.join(sb.hubCache, "models--tester--tiny-arith-lora-sub", "snapshots", hub.commitOf("tester/tiny-arith-lora-sub"));
    expect(readdirSync(snapshot).sort()).toEqual(["adapter_config.json", "adapter_model.safetensors"]);
    expect(cachedAdapters(sb.home)).toHaveLength(1);
    const list = await slm(["list", "--json"], sb);
    expect(list.stdout).not.toMatch(/tiny-arith-lora-sub/);

    // Offline, from the cache alone, with a scale (hf: prefix accepted).
    const offline = await slm(["run", "tiny-arith", "57-23", "-t", "0", "--lora", "hf:tester/tiny-arith-lora-sub:1"], sb, { env: { ...sb.env, HF_HUB_OFFLINE: "1" } });
    expect(offline.exitCode, offline.all).toBe(0);
    expect(offline.stdout.trim()).toBe("34");
  });

  it("a repo that is not a PEFT adapter is a usage error", async () => {
    const sb = sandbox(hub.url);
    const r = await slm(["run", "tiny-arith", "1+1", "--lora", "tester/not-an-adapter"], sb);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/not a PEFT LoRA adapter repository/);
  });
});
