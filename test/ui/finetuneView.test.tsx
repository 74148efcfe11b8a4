import { readFileSync } from "node:fs";
import path from "node:path";
import { render } from "ink-testing-library";
import React from "react";
import { describe, expect, it } from "vitest";
import { parseEventLine } from "../../src/backends/python/events.js";
import type { SlmEvent } from "../../src/core/events.js";
import { areaChart, bucketMeans } from "../../src/ui/chart.js";
import { plainFinetuneWriter } from "../../src/ui/finetunePlain.js";
import { FinetuneView } from "../../src/ui/ink/FinetuneView.js";
import { FinetuneStore } from "../../src/ui/ink/finetuneStore.js";
import { etaSeconds } from "../../src/ui/trainState.js";
import { ROOT } from "../helpers/cli.js";

// events-sample.ndjson is a recording made by hand that follows the recipe protocol
// (recipes/slm_recipes/events.py), with round numbers to assert on. events-cpu.ndjson is the stdout of a
// real `slm finetune test/fixtures/tiny-arith/hf --lora …/sub-train.jsonl --max-steps 50 --batch-size 32
// --lr 5e-3 --rank 8 --alpha 16 --val-split 0.05 --json` on the CPU (torch 2.13, transformers 5.17,
// peft 0.21): slm's own steps (conversion, data summary) and the recipe's events as slm forwards them.
const DIR = path.join(ROOT, "test", "fixtures", "finetune");
const REAL = path.join(DIR, "events-cpu.ndjson");
function recording(file = "events-sample.ndjson"): SlmEvent[] {
  const lines = readFileSync(path.join(DIR, file), "utf8").split("\n").filter(Boolean);
  // The recipe's lines go through the same parser runRecipe uses; the result event is runRecipe's return value.
  return lines.map((l) => parseEventLine(l)!).filter((e) => e && e.type !== "result");
}
/** An event as a recipe writes it before `ts` is filled in (each member of the union on its own). */
type EventWithoutTs = SlmEvent extends infer E ? (E extends SlmEvent ? Omit<E, "ts"> : never) : never;
const tick = () => new Promise((r) => setTimeout(r, 30));

describe("the fine-tune view, replaying a recipe's events", () => {
  it("shows progress, speed, ETA, losses and a loss curve while training, and the steps that finished", async () => {
    const events = recording();
    const store = new FinetuneStore();
    const view = render(<FinetuneView store={store} />);
    const mid = events.findIndex((e) => e.type === "metric" && e.name === "loss" && e.step === 30);
    for (const e of events.slice(0, mid + 4)) store.push(e);
    await tick();
    const live = view.lastFrame()!;
    expect(live).toContain("✓ Load base model (307,200 trainable parameters)");
    expect(live).toContain("✓ Prepare data (3,645 training examples, 405 eval examples)");
    expect(live).toContain("› Train");
    expect(live).toMatch(/step 28\/60 \(46%\)/);
    expect(live).toMatch(/4\.00 steps\/s/);
    expect(live).toMatch(/35\d tokens\/s/);
    // 32 steps left at 4 steps/s.
    expect(live).toContain("ETA 8.0s");
    expect(live).toMatch(/loss 0\.\d{4} \(best 0\.\d{4}\)/);
    expect(live).toMatch(/lr 1\.00e-4/);
    // The curve: six rows between the highest and the lowest loss so far, falling from left to right.
    const rows = live.split("\n").filter((l) => /[┤│]/.test(l));
    expect(rows).toHaveLength(6);
    expect(rows[0]).toMatch(/^\s*1\.9\d{3} ┤█/);
    expect(rows[5]).toMatch(/^\s*0\.\d{4} ┤/);
    expect(live).toContain("loss, step 5 → 30");
    expect(live).not.toContain("checkpoint /home");

    for (const e of events.slice(mid + 4)) store.push(e);
    await tick();
    const done = view.lastFrame()!;
    expect(done).toContain("✓ Train (60 steps, train loss 0.3873, eval loss 0.4023)");
    expect(done).toContain("✓ Save adapter");
    expect(done).toMatch(/step 60\/60 \(100%\)/);
    expect(done).not.toContain("ETA");
    expect(done).toContain("eval 0.4023");
    expect(done).toContain("loss, step 5 → 60");
    view.unmount();
  });

  it("replays a real recording (events-cpu.ndjson) to the end", async () => {
    const events = recording(path.basename(REAL));
    const store = new FinetuneStore();
    const view = render(<FinetuneView store={store} />);
    for (const e of events) store.push(e);
    await tick();
    const frame = view.lastFrame()!;
    expect(frame).toMatch(/✓ Train \(50 steps, train loss \d\.\d{4}, eval loss \d\.\d{4}\)/);
    expect(frame).toContain("✓ Save adapter");
    expect(frame).toContain("step 50/50 (100%)");
    expect(frame).toMatch(/eval \d\.\d{4}/);
    expect(frame).toMatch(/loss \d+\.\d{4} \(best \d+\.\d{4}\)/);
    expect(frame.split("\n").filter((l) => /[┤│]/.test(l))).toHaveLength(6);
    view.unmount();
  });

  it("shows GPU memory when the recipe reports it, and debug logs only when verbose", async () => {
    const store = new FinetuneStore();
    const view = render(<FinetuneView store={store} />);
    const t0 = Date.now() - 5_000;
    const at = (e: EventWithoutTs, seconds = 5) => ({ ...e, ts: t0 + seconds * 1000 }) as SlmEvent;
    store.push(at({ type: "step", id: "train", status: "start", title: "Train", detail: "100 steps" }, 0));
    store.push(at({ type: "progress", id: "train", unit: "steps", current: 1, total: 100, rate: 2 }, 0.5));
    store.push(at({ type: "progress", id: "train", unit: "steps", current: 10, total: 100, rate: 2 }));
    store.push(at({ type: "metric", name: "gpu_mem_gib", value: 12.34, unit: "GiB", step: 10 }));
    store.push(at({ type: "metric", name: "tokens_per_s", value: 26900, unit: "tokens/s", step: 10 }));
    store.push(at({ type: "log", level: "debug", message: "hidden detail" }));
    await tick();
    const frame = view.lastFrame()!;
    expect(frame).toContain("GPU 12.3 GiB");
    expect(frame).toContain("27K tokens/s");
    expect(frame).toContain("ETA 45s");
    expect(frame).not.toContain("hidden detail");
    view.unmount();
  });
});

describe("plain output of a fine-tune (not a terminal)", () => {
  it("writes a status line at most every interval, each evaluation, and the last numbers", () => {
    const lines: string[] = [];
    const write = plainFinetuneWriter((l) => lines.push(l), false, 5_000);
    for (const e of recording()) write(e);
    const status = lines.filter((l) => /^ {2}step \d+\/60/.test(l));
    // 15 s of training, a line at most every 5 s, plus the final one: not one line per metric (49 metrics).
    expect(status.length).toBeGreaterThanOrEqual(3);
    expect(status.length).toBeLessThanOrEqual(5);
    expect(status[status.length - 1]).toMatch(/step 60\/60 \(100%\) .*loss 0\.\d{4} \(best 0\.\d{4}\)\s+eval 0\.4023/);
    expect(lines).toContain("  eval loss 0.4023 at step 60");
    expect(lines).toContain("✓ Train (60 steps, train loss 0.3873, eval loss 0.4023)");
    expect(lines.some((l) => l.includes("checkpoint /home"))).toBe(false);
    expect(lines.some((l) => /^ {2}(loss|lr|grad_norm): /.test(l))).toBe(false);
  });
});

describe("the loss chart", () => {
  it("averages into columns and draws a falling series from full height to the lowest eighth", () => {
    expect(bucketMeans([1, 2, 3, 4, 5, 6], 3)).toEqual([1.5, 3.5, 5.5]);
    expect(bucketMeans([1, 2], 5)).toEqual([1, 2]);
    const c = areaChart([4, 3, 2, 1], 10, 2)!;
    expect(c).toMatchObject({ min: 1, max: 4, columns: 4 });
    // Heights in eighths: 16, 11, 6, 1 over two rows.
    expect(c.rows).toEqual(["█▃  ", "██▆▁"]);
    expect(areaChart([], 10, 2)).toBeUndefined();
    // A flat series sits mid-height instead of dividing by zero.
    expect(areaChart([1, 1, 1], 10, 2)!.rows).toEqual(["   ", "███"]);
  });

  it("estimates the time left from the step rate, once 5 % of the steps and 3 s have passed", () => {
    expect(etaSeconds({ loss: [], evalLoss: [], step: 10, total: 110, rate: 4, startedAt: 0, lastTs: 3_000 })).toBe(25);
    expect(etaSeconds({ loss: [], evalLoss: [], step: 10, total: 110, rate: 4, startedAt: 0, lastTs: 2_000 })).toBeUndefined();
    expect(etaSeconds({ loss: [], evalLoss: [], step: 4, total: 110, rate: 4, startedAt: 0, lastTs: 9_000 })).toBeUndefined();
    expect(etaSeconds({ loss: [], evalLoss: [], step: 10 })).toBeUndefined();
  });
});
