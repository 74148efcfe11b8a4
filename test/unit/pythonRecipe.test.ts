import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PythonEnv } from "../../src/backends/python/env.js";
import { parseEventLine } from "../../src/backends/python/events.js";
import { runRecipe } from "../../src/backends/python/recipe.js";
import { CancelledError, ExternalError, NotFoundError, SlmError, UsageError } from "../../src/core/errors.js";
import type { SlmEvent } from "../../src/core/events.js";
import { findExecutable, pathDirs } from "../../src/core/exec.js";
import { ROOT } from "../helpers/cli.js";

/**
 * The recipe runner against real Python scripts (test/fixtures/recipes): events, failures, Ctrl+C and
 * polluted output, through a real interpreter. Only python3 is needed, no ML modules.
 */
const RECIPES = path.join(ROOT, "test", "fixtures", "recipes");
const recipe = (name: string) => path.join(RECIPES, name);

let python: PythonEnv;
let tmp: string;
beforeAll(async () => {
  const found = (await findExecutable("python3", pathDirs())) ?? (await findExecutable("python", pathDirs()));
  if (!found) throw new Error("these tests need python3 on PATH");
  python = { python: found, source: "SLM_PYTHON" };
  tmp = mkdtempSync(path.join(tmpdir(), "slm-recipe-test-"));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function collect(): { events: SlmEvent[]; onEvent: (e: SlmEvent) => void } {
  const events: SlmEvent[] = [];
  return { events, onEvent: (e) => events.push(e) };
}

describe("runRecipe", () => {
  it("forwards the recipe's events in order, fills missing timestamps, passes the config and returns the last result", async () => {
    const { events, onEvent } = collect();
    const config = { base: "/models/x", lr: 0.0002, target_modules: ["q_proj", "v_proj"], name: "naïve ✓" };
    const before = Date.now();
    const data = await runRecipe<{ echo: unknown; steps: number; unicode: string }>({ recipe: recipe("events.py"), config, python }, { onEvent });
    expect(data).toEqual({ echo: config, steps: 3, unicode: "naïve ✓" });
    const own = events.filter((e) => e.type !== "log" || e.level !== "debug");
    expect(own.map((e) => e.type)).toEqual(["step", "progress", "metric", "progress", "metric", "progress", "metric", "log", "step"]);
    expect(own[0]).toMatchObject({ type: "step", id: "train", status: "start", title: "Training" });
    expect(own[6]).toMatchObject({ type: "metric", name: "loss", step: 3 });
    expect((own[6] as { value: number }).value).toBeCloseTo(2 / 3);
    // Python's "warning" becomes slm's "warn".
    expect(own[7]).toMatchObject({ type: "log", level: "warn", message: "a notice from the recipe" });
    for (const e of own) expect(e.ts).toBeGreaterThanOrEqual(before - 5_000);
    // Results are returned, never forwarded (the command renders its own).
    expect(events.some((e) => e.type === "result")).toBe(false);
    // stderr arrives as debug logs.
    expect(events).toContainEqual(expect.objectContaining({ type: "log", level: "debug", message: "loading things" }));
  });

  it("turns a recipe's refusal of its config (exit 2) into a usage error with the recipe's own line", async () => {
    const err = await runRecipe({ recipe: recipe("refuse.py"), config: { architecture: "MambaForCausalLM" }, python }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).exitCode).toBe(2);
    expect((err as UsageError).message).toBe("awq: architecture 'MambaForCausalLM' is not supported (supported: LlamaForCausalLM)");
  });

  it("turns a failing recipe into an ExternalError carrying the tail of its stderr", async () => {
    const { events, onEvent } = collect();
    const err = await runRecipe({ recipe: recipe("fail.py"), config: {}, python }, { onEvent }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ExternalError);
    const e = err as ExternalError;
    expect(e.exitCode).toBe(6);
    expect(e.message).toContain("fail.py exited with code 3");
    expect(e.message).toContain("CUDA out of memory (simulated");
    expect(e.stderrTail).toContain("RuntimeError: CUDA out of memory");
    // About 4 KB of tail: the last lines, not the first of 200 noise lines.
    expect(e.stderrTail).not.toContain("noise line 0 ");
    expect(e.stderrTail.length).toBeLessThanOrEqual(4096);
    expect(e.stderrTail.length).toBeGreaterThan(2000);
    expect(events[0]).toMatchObject({ type: "step", id: "load", status: "start" });
  });

  it("on abort sends SIGINT, lets the recipe write its checkpoint and exit 130, and throws CancelledError", async () => {
    const marker = path.join(tmp, "checkpoint-1.json");
    const ctl = new AbortController();
    const { events, onEvent } = collect();
    const started = Date.now();
    const run = runRecipe({ recipe: recipe("sigint.py"), config: { marker }, python }, {
      signal: ctl.signal,
      onEvent: (e) => {
        onEvent(e);
        if (e.type === "log" && e.message.startsWith("ready")) ctl.abort();
      },
    });
    await expect(run).rejects.toBeInstanceOf(CancelledError);
    expect(existsSync(marker)).toBe(true);
    expect(JSON.parse(readFileSync(marker, "utf8"))).toMatchObject({ signal: "SIGINT" });
    // The recipe's own goodbye arrived before the runner gave up.
    expect(events).toContainEqual(expect.objectContaining({ type: "step", id: "train", status: "fail", detail: "interrupted" }));
    expect(Date.now() - started).toBeLessThan(20_000);
  });

  it("kills a recipe that ignores SIGINT once the grace period is over", async () => {
    const marker = path.join(tmp, "checkpoint-2.json");
    const ctl = new AbortController();
    const started = Date.now();
    const run = runRecipe({ recipe: recipe("sigint.py"), config: { marker, ignore: true }, python, graceMs: 700 }, {
      signal: ctl.signal,
      onEvent: (e) => {
        if (e.type === "log" && e.message.startsWith("ready")) ctl.abort();
      },
    });
    await expect(run).rejects.toBeInstanceOf(CancelledError);
    expect(existsSync(marker)).toBe(false);
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  it("treats exit code 130 from the recipe itself as a cancel", async () => {
    await expect(runRecipe({ recipe: recipe("sigint.py"), config: { self_interrupt: true }, python })).rejects.toBeInstanceOf(CancelledError);
  });

  it("shows junk on stdout as debug logs and keeps the real events", async () => {
    const { events, onEvent } = collect();
    const data = await runRecipe<number[]>({ recipe: recipe("junk.py"), config: {}, python }, { onEvent });
    expect(data).toEqual([1, 2, 3]);
    const real = events.filter((e) => !(e.type === "log" && e.level === "debug"));
    expect(real).toEqual([expect.objectContaining({ type: "metric", name: "loss", value: 1.5, step: 1 }), expect.objectContaining({ type: "log", level: "info", message: "indented but fine" })]);
    const debug = events.filter((e) => e.type === "log" && e.level === "debug").map((e) => (e as { message: string }).message);
    expect(debug).toEqual(
      expect.arrayContaining(["Some library banner v1.2.3", "{not json at all", '{"type": "unknown-kind", "x": 1}', "[1, 2, 3]", "trailing junk after the result"]),
    );
    // A NaN metric (invalid JSON) is not passed on as an event.
    expect(debug.some((m) => m.includes("NaN"))).toBe(true);
  });

  it("fails clearly when the recipe ends without a result", async () => {
    const err = await runRecipe({ recipe: recipe("events.py"), config: { no_result: true }, python }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ExternalError);
    expect((err as Error).message).toContain("events.py finished without reporting a result");
  });

  it("refuses a recipe that is not installed", async () => {
    await expect(runRecipe({ recipe: "no_such_recipe.py", config: {}, python })).rejects.toBeInstanceOf(NotFoundError);
  });

  it("leaves no config file behind", async () => {
    const before = new Set(listTmp());
    await runRecipe({ recipe: recipe("events.py"), config: {}, python });
    await runRecipe({ recipe: recipe("fail.py"), config: {}, python }).catch(() => undefined);
    expect(listTmp().filter((n) => !before.has(n))).toEqual([]);
  });

  it("names the fix when no Python is configured", async () => {
    const saved = { SLM_PYTHON: process.env.SLM_PYTHON, SLM_HOME: process.env.SLM_HOME };
    process.env.SLM_PYTHON = "";
    process.env.SLM_HOME = path.join(tmp, "empty-home");
    try {
      const err = await runRecipe({ recipe: recipe("events.py"), config: {} }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SlmError);
      expect((err as SlmError).exitCode).toBe(5);
      expect((err as SlmError).hint).toContain("slm setup python");
    } finally {
      for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
});

function listTmp(): string[] {
  return readdirSync(tmpdir()).filter((n) => n.startsWith("slm-recipe-") && !n.startsWith("slm-recipe-test-"));
}

describe("parseEventLine", () => {
  it("accepts the vocabulary and fills ts", () => {
    expect(parseEventLine('{"type":"progress","id":"train","unit":"steps","current":3,"total":10}', 42)).toEqual({ type: "progress", ts: 42, id: "train", unit: "steps", current: 3, total: 10 });
    expect(parseEventLine('{"type":"step","id":"save","status":"done","title":"Saving","ts":7}', 42)).toMatchObject({ ts: 7, status: "done" });
    expect(parseEventLine('{"type":"result","data":{"a":1}}', 1)).toEqual({ type: "result", ts: 1, data: { a: 1 } });
    expect(parseEventLine('{"type":"log","level":"ERROR","message":"x"}', 1)).toMatchObject({ level: "warn" });
  });

  it("rejects what is not an event", () => {
    for (const line of ["", "hello", "{", "[]", "null", '{"type":"step","id":"x","status":"started","title":"t"}', '{"type":"metric","name":"loss","value":"1"}', '{"type":"progress","id":"x","unit":"steps"}']) {
      expect(parseEventLine(line), line).toBeUndefined();
    }
  });
});
