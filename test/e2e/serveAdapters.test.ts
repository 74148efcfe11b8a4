import { copyFileSync, mkdirSync, readFileSync, realpathSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { execa, type ResultPromise } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Registry } from "../../src/backends/store/types.js";
import { firstLines } from "../helpers/accuracy.js";
import { BIN, FIXTURE, ROOT, sandbox } from "../helpers/cli.js";
import { listening } from "../helpers/serveProcess.js";

/** The built-in tiny-arith's file, and the fixture's subtraction adapter for it. */
const BASE = path.join(ROOT, "models", "tiny-arith-f16.gguf");
const LORA = path.join(FIXTURE, "gguf", "lora-sub-f32.gguf");

interface Health {
  models: { id: string; state: string }[];
}

/**
 * How many times the base's file is mapped into the server's memory, as the kernel reports it: llama.cpp
 * mmaps the weights of every model it loads, so a second copy of the base would be a second mapping.
 */
function baseMappings(pid: number): number {
  const file = realpathSync(BASE);
  return readFileSync(`/proc/${pid}/maps`, "utf8")
    .split("\n")
    .filter((l) => l.endsWith(` ${file}`)).length;
}

describe("slm serve: one base, many adapters", () => {
  const sb = sandbox();
  let url: string;
  let proc: ResultPromise<{ reject: false }>;
  let atStart: number;

  const ask = async (model: string, q: string): Promise<string> => {
    const r = await fetch(`${url}/v1/chat/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ model, messages: [{ role: "user", content: q }], temperature: 0, max_tokens: 8 }) });
    expect(r.status).toBe(200);
    return ((await r.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content.trim();
  };
  const health = async () => (await (await fetch(`${url}/health`)).json()) as Health;

  beforeAll(async () => {
    // Registered as `slm finetune` leaves a fine-tune of a registered GGUF base: the base's file plus an adapter.
    mkdirSync(sb.home, { recursive: true });
    const entry = (name: string, adapter: string) => ({
      name, format: "gguf" as const, path: BASE, files: [{ path: BASE, size: statSync(BASE).size }], source: { type: "derived" as const }, size: 1,
      architecture: "llama", adapters: [{ path: adapter, scale: 1 }], lineage: [], createdAt: "2026-01-01T00:00:00Z",
    });
    const reg: Registry = { version: 1, models: { "tiny-arith+sub": entry("tiny-arith+sub", LORA), "tiny-arith+gone": entry("tiny-arith+gone", path.join(sb.home, "missing.gguf")) } };
    writeFileSync(path.join(sb.home, "registry.json"), JSON.stringify(reg));
    proc = execa("node", [BIN, "serve", "tiny-arith", "--port", "0", "--threads", "1", "--parallel", "2", "--idle-timeout", "1s"], { env: sb.env, extendEnv: true, reject: false });
    ({ url } = await listening(proc, 60_000));
    atStart = baseMappings(proc.pid!);
  }, 90_000);

  afterAll(async () => {
    proc?.kill("SIGINT");
    await proc;
  });

  it("lists the registered fine-tunes whose files are there", async () => {
    const ids = ((await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] }).data.map((m) => m.id);
    expect(ids).toContain("tiny-arith+sub");
    expect(ids).not.toContain("tiny-arith+gone");
    // Named in a query string as a user types it, "+" and all.
    const info = await fetch(`${url}/tokenizer_info?model=tiny-arith+sub`);
    expect(info.status).toBe(200);
    expect(((await info.json()) as { eos_token: string }).eos_token).toBe("</s>");
  });

  it("answers base and base+sub at once, each its own way (adds / subtracts)", async () => {
    const add = firstLines("add-eval.jsonl", 6);
    const sub = firstLines("sub-eval.jsonl", 6);
    const [added, subtracted] = await Promise.all([Promise.all(add.map((x) => ask("tiny-arith", x.q))), Promise.all(sub.map((x) => ask("tiny-arith+sub", x.q)))]);
    expect(added.filter((a, i) => a === add[i]!.a).length).toBeGreaterThanOrEqual(5);
    expect(subtracted.filter((a, i) => a === sub[i]!.a).length).toBeGreaterThanOrEqual(5);
    // The adapter is the difference: the base does not subtract.
    expect((await Promise.all(sub.map((x) => ask("tiny-arith", x.q)))).filter((a, i) => a === sub[i]!.a).length).toBeLessThanOrEqual(2);
  }, 30_000);

  it("holds the base's weights once while both are loaded", async () => {
    expect((await health()).models.map((m) => [m.id, m.state])).toEqual(expect.arrayContaining([["tiny-arith", "ready"], ["tiny-arith+sub", "ready"]]));
    expect(atStart).toBeGreaterThan(0);
    expect(baseMappings(proc.pid!)).toBe(atStart);
  });

  it("unloads the adapter's context when idle and loads it again on the next request", async () => {
    const deadline = Date.now() + 15_000;
    while ((await health()).models.some((m) => m.id === "tiny-arith+sub") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect((await health()).models.map((m) => m.id)).toEqual(["tiny-arith"]);
    // The base stays (it was named on the command line); the adapter comes back with its behaviour.
    expect(baseMappings(proc.pid!)).toBe(atStart);
    expect(await ask("tiny-arith+sub", "43-2")).toBe("41");
    expect(await ask("tiny-arith", "43+2")).toBe("45");
  }, 30_000);

  it("applies the server's --lora to bare names only: base+sub brings its own adapter", async () => {
    // A copy of the sub adapter at scale −1: on top of tiny-arith+sub it would cancel the adapter (it
    // then adds again, measured on the commit before this rule); on the bare base it garbles the sums.
    const negated = path.join(sb.home, "sub-copy.gguf");
    copyFileSync(LORA, negated);
    const other = execa("node", [BIN, "serve", "--port", "0", "--threads", "1", "--lora", `${negated}:-1`], { env: sb.env, extendEnv: true, reject: false });
    try {
      const { url: otherUrl } = await listening(other, 60_000);
      const askOther = async (model: string, q: string) => {
        const r = await fetch(`${otherUrl}/v1/chat/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ model, messages: [{ role: "user", content: q }], temperature: 0, max_tokens: 8 }) });
        return ((await r.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content.trim();
      };
      const sub = firstLines("sub-eval.jsonl", 4);
      const answers = await Promise.all(sub.map((x) => askOther("tiny-arith+sub", x.q)));
      expect(answers.filter((a, i) => a === sub[i]!.a).length).toBeGreaterThanOrEqual(3);
      // The bare base does get --lora: its sums are no longer its own.
      const add = firstLines("add-eval.jsonl", 4);
      expect((await Promise.all(add.map((x) => askOther("tiny-arith", x.q)))).filter((a, i) => a === add[i]!.a).length).toBeLessThanOrEqual(1);
    } finally {
      other.kill("SIGINT");
      await other;
    }
  }, 60_000);
});
