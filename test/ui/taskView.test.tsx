import { render } from "ink-testing-library";
import React from "react";
import { describe, expect, it } from "vitest";
import type { SlmEvent } from "../../src/core/events.js";
import { TaskView } from "../../src/ui/ink/TaskView.js";
import { TaskStore } from "../../src/ui/ink/taskStore.js";

const at = <T extends Omit<SlmEvent, "ts">>(e: T) => ({ ...e, ts: Date.now() }) as SlmEvent;
const tick = () => new Promise((r) => setTimeout(r, 20));

describe("TaskView (the pull progress view)", () => {
  it("shows a running download with a bar, bytes, rate and ETA, then moves it to the finished list", async () => {
    const store = new TaskStore();
    const view = render(<TaskView store={store} />);
    store.push(at({ type: "step", id: "resolve", status: "done", title: "Resolved org/repo@abc", detail: "1 file(s), Q8_0" }));
    store.push({ ...at({ type: "step", id: "m.gguf", status: "start", title: "m.gguf" }), ts: Date.now() - 5_000 });
    store.push(at({ type: "progress", id: "m.gguf", unit: "bytes", current: 50_000_000, total: 200_000_000, rate: 10_000_000 }));
    await tick();
    const live = view.lastFrame()!;
    expect(live).toContain("✓ Resolved org/repo@abc (1 file(s), Q8_0)");
    expect(live).toContain("m.gguf");
    expect(live).toContain("25%");
    expect(live).toContain("50.0 MB / 200 MB");
    expect(live).toContain("10.0 MB/s");
    expect(live).toContain("ETA 15s");
    // a quarter of the 24-cell bar is filled, before the numbers; 5 s so far
    expect(live).toMatch(/› m\.gguf █{6}░{18} 25% 50\.0 MB \/ 200 MB 10\.0 MB\/s ETA 15s [5-6]\.\ds elapsed/);

    store.push(at({ type: "step", id: "m.gguf", status: "done", title: "m.gguf", detail: "verified" }));
    await tick();
    const done = view.lastFrame()!;
    expect(done).toContain("✓ m.gguf (verified)");
    expect(done).not.toContain("ETA");
    view.unmount();
  });

  it("shows GPTQ's layers done, its calibration tokens/s and the time left from the layers' pace", async () => {
    const store = new TaskStore();
    const view = render(<TaskView store={store} />);
    store.push({ ...at({ type: "step", id: "quantize:layers", status: "start", title: "Quantizing layers (GPTQ 4-bit, g128)" }), ts: Date.now() - 40_000 });
    store.push(at({ type: "progress", id: "quantize:layers", unit: "layers", current: 8, total: 32, rate: 1834.2, rateUnit: "tokens" }));
    await tick();
    // 8 layers in 40 s: 5 s each, 24 left.
    expect(view.lastFrame()!).toMatch(/25% 8\/32 layers 1834 tokens\/s ETA 2m0?0?s/);
    view.unmount();
  });

  it("shows failures and warnings, and hides debug logs unless verbose", async () => {
    const store = new TaskStore();
    const view = render(<TaskView store={store} />);
    store.push(at({ type: "log", level: "debug", message: "secret detail" }));
    store.push(at({ type: "log", level: "warn", message: "disk almost full" }));
    store.push(at({ type: "step", id: "x", status: "fail", title: "x.gguf", detail: "checksum mismatch" }));
    await tick();
    const frame = view.lastFrame()!;
    expect(frame).toContain("! disk almost full");
    expect(frame).toContain("✗ x.gguf (checksum mismatch)");
    expect(frame).not.toContain("secret detail");
    view.unmount();
  });
});
