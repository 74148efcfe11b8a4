import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { beforeAll, expect, type TestContext } from "vitest";
import { readSafetensors, readTensorF32 } from "../../src/backends/adapters/safetensors.js";
import { type Sandbox, sandbox } from "./cli.js";
import { finetunePythonForTests } from "./python.js";

/** What the test files that train with the real recipe share. */

/** An event of `slm finetune --json`'s output (the recipe's events, relayed). */
export interface RunEvent {
  type: string;
  id?: string;
  status?: string;
  name?: string;
  value?: number;
  step?: number;
  current?: number;
  data?: unknown;
}

export const runEvents = (stdout: string): RunEvent[] => stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as RunEvent);

/** (step, loss) of every loss metric. */
export const lossPoints = (ev: RunEvent[]) => ev.filter((e) => e.type === "metric" && e.name === "loss").map((e) => [e.step!, e.value!] as const);

export interface RealRecipe {
  /** The Python with the ML stack (SLM_TEST_PYTHON…), once found. */
  readonly python: string | undefined;
  /** A sandbox whose SLM_PYTHON is that Python. */
  readonly sb: Sandbox;
  /** Skips the test, by name and with the reason, where no such Python exists. */
  need(ctx: TestContext): void;
}

/** Finds the Python before the file's tests run (a beforeAll of the calling file); `what` names the skipped tests. */
export function realRecipe(what: string): RealRecipe {
  let python: string | undefined;
  let skip: string | undefined;
  let sb: Sandbox | undefined;
  beforeAll(async () => {
    const p = await finetunePythonForTests();
    python = p.python;
    skip = p.skip;
    if (skip) process.stderr.write(`[tests] skipping ${what}: ${skip}\n`);
    sb = sandbox(undefined, python ? { SLM_PYTHON: python } : {});
  });
  return {
    get python() {
      return python;
    },
    get sb() {
      if (!sb) throw new Error("realRecipe's sandbox exists once its beforeAll has run");
      return sb;
    },
    need(ctx: TestContext) {
      if (!python) ctx.skip(skip);
    },
  };
}

/** Every tensor of a PEFT adapter folder, as float32. */
export function adapterTensors(dir: string): Map<string, Float32Array> {
  const file = readSafetensors(path.join(dir, "adapter_model.safetensors"));
  return new Map(file.tensors.map((t) => [t.name, readTensorF32(file, t)]));
}

export function maxDifference(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  let max = 0;
  for (const [name, x] of a) {
    const y = b.get(name)!;
    for (let i = 0; i < x.length; i++) max = Math.max(max, Math.abs(x[i]! - y[i]!));
  }
  return max;
}

/** Processes whose command line mentions `needle` (a sandbox's path, a recipe config's). */
export function processesMentioning(needle: string): number[] {
  const found: number[] = [];
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(needle)) found.push(Number(pid));
    } catch {
      // Gone meanwhile.
    }
  }
  return found;
}
