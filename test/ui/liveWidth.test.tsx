import { EventEmitter } from "node:events";
import { render } from "ink";
import React from "react";
import { describe, expect, it } from "vitest";
import type { SlmEvent } from "../../src/core/events.js";
import { displayWidth, fitLine, fitText, truncateMiddle } from "../../src/ui/layout.js";
import { FinetuneView } from "../../src/ui/ink/FinetuneView.js";
import { FinetuneStore } from "../../src/ui/ink/finetuneStore.js";
import { TaskView } from "../../src/ui/ink/TaskView.js";
import { TaskStore } from "../../src/ui/ink/taskStore.js";
import { etaSeconds } from "../../src/ui/progress.js";

/** A terminal of a given width, as Ink sees one: it records what Ink draws and can be resized. */
class Terminal extends EventEmitter {
  frames: string[] = [];
  isTTY = true;
  rows = 24;
  constructor(public columns: number) {
    super();
  }
  write = (frame: string) => {
    this.frames.push(frame);
    return true;
  };
  resize(columns: number) {
    this.columns = columns;
    this.emit("resize");
  }
}

// eslint-disable-next-line no-control-regex
const plain = (s: string) => s.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "");
const lines = (frame: string) => plain(frame).split("\n");
const tick = () => new Promise((r) => setTimeout(r, 30));

type Draft = SlmEvent extends infer E ? (E extends SlmEvent ? Omit<E, "ts"> & { at?: number } : never) : never;

/**
 * Each live view with what it shows at its widest: long model and file names, all the numbers (rate,
 * ETA after enough of the work, elapsed time), warnings and finished steps with long details. `at` is
 * the event's time in seconds after the start.
 */
const LONG = "Meta-Llama-3.1-8B-Instruct-abliterated-uncensored-v2";
const VIEWS: Record<string, Draft[]> = {
  pull: [
    { type: "step", id: "resolve", status: "done", title: `Resolved bartowski/${LONG}-GGUF@0123456789`, detail: "1 file(s), Q4_K_M" },
    { type: "step", id: "f", status: "start", title: `${LONG}-Q4_K_M.gguf` },
    { type: "progress", id: "f", unit: "bytes", current: 1_234_567_890, total: 4_920_000_000, rate: 25_300_000, at: 48 },
  ],
  quantize: [
    { type: "step", id: "quantize:calibration", status: "done", title: `Preparing calibration data from ${LONG}-calibration.jsonl`, detail: "512 chunks" },
    { type: "step", id: "quantize:imatrix", status: "start", title: "Computing the importance matrix (llama-imatrix)" },
    { type: "progress", id: "quantize:imatrix", unit: "chunks", current: 117, total: 512, rate: 1.83, at: 64 },
    { type: "step", id: "quantize:run", status: "start", title: `Quantizing ${LONG}-F16 to Q3_K_M` },
    { type: "progress", id: "quantize:run", unit: "tensors", current: 187, total: 292, rate: 3.4, at: 55 },
  ],
  gptq: [
    { type: "step", id: "quantize:calibration", status: "done", title: `Calibration data from ${LONG}-calibration.jsonl`, detail: "128 windows of 512 tokens" },
    { type: "step", id: "quantize:layers", status: "start", title: `Quantizing layers of ${LONG} (GPTQ 4-bit, g128, act-order)` },
    { type: "progress", id: "quantize:layers", unit: "layers", current: 7, total: 32, rate: 1834.2, rateUnit: "tokens", at: 140 },
  ],
  imatrix: [
    { type: "step", id: "quantize:imatrix", status: "start", title: "Computing the importance matrix (llama-imatrix)" },
    { type: "progress", id: "quantize:imatrix", unit: "chunks", current: 1117, total: 10512, rate: 18.3, at: 61 },
  ],
  convert: [
    { type: "step", id: "convert:run", status: "start", title: `Converting ${LONG} to GGUF (f16): writing` },
    { type: "progress", id: "convert:run", unit: "tensors", current: 150, total: 291, rate: 27.2, at: 5.5 },
  ],
  eval: [
    { type: "step", id: "load:a", status: "done", title: `Loaded ${LONG}-Q4_K_M`, detail: "2 threads, 4 sequences of 4096 tokens" },
    { type: "step", id: "eval:a", status: "start", title: `${LONG}-Q4_K_M: arithmetic-word-problems-hard (1319 questions)` },
    { type: "progress", id: "eval:a", unit: "questions", current: 1203, total: 1319, rate: 13.7, at: 88 },
  ],
  sweep: [
    { type: "step", id: "q:Q8_0", status: "done", title: `Quantized ${LONG}-F16 to Q8_0`, detail: "8.54 GB, 1m12s" },
    { type: "log", level: "warn", message: `Q2_K of ${LONG}-F16 lost 23.4 points of accuracy on arithmetic-word-problems-hard; it is kept only with --keep all` },
    { type: "step", id: "eval:Q2_K", status: "start", title: `${LONG}-Q2_K: arithmetic-word-problems-hard (1319 questions)` },
    { type: "progress", id: "eval:Q2_K", unit: "questions", current: 77, total: 1319, rate: 9.2, at: 8.4 },
    { type: "step", id: "ppl:Q2_K", status: "start", title: `${LONG}-Q2_K: perplexity on wiki.test.raw` },
    { type: "progress", id: "ppl:Q2_K", unit: "tokens", current: 123_456, total: 287_000, rate: 4312.5, at: 28 },
  ],
  setup: [
    { type: "step", id: "llama.cpp:build", status: "start", title: "Building llama-quantize, llama-imatrix, llama-perplexity, llama-bench and llama-export-lora (cmake, 16 jobs)" },
    { type: "progress", id: "llama.cpp:build", unit: "percent", current: 45, total: 100, rate: 0.21, at: 214 },
    { type: "step", id: "python:torch", status: "start", title: "Installing torch (CUDA)" },
    { type: "progress", id: "python:torch", unit: "bytes", current: 412_000_000, total: 906_400_000, detail: "torch-2.13.0+cu128-cp312-cp312-manylinux_2_28_x86_64.whl", at: 95 },
  ],
};

function events(drafts: Draft[], t0: number): SlmEvent[] {
  return drafts.map(({ at, ...e }) => ({ ...e, ts: t0 + (at ?? 0) * 1000 }) as SlmEvent);
}

function finetuneEvents(t0: number): SlmEvent[] {
  const out: Draft[] = [
    { type: "step", id: "base", status: "done", title: `Load base model ${LONG}`, detail: "41,943,040 trainable parameters" },
    { type: "step", id: "train", status: "start", title: "Train", detail: "12000 steps" },
  ];
  for (let i = 1; i <= 400; i++) {
    out.push({ type: "progress", id: "train", unit: "steps", current: i, total: 12000, rate: 2.37, at: i / 2.37 });
    out.push({ type: "metric", name: "loss", value: 123.4567 / i, step: i });
  }
  out.push({ type: "metric", name: "eval_loss", value: 1.2345, step: 400 });
  out.push({ type: "metric", name: "lr", value: 0.000123, step: 400 });
  out.push({ type: "metric", name: "grad_norm", value: 12.345, step: 400 });
  out.push({ type: "metric", name: "tokens_per_s", value: 37_912, step: 400 });
  out.push({ type: "metric", name: "gpu_mem_gib", value: 64.63, step: 400 });
  return events(out, t0);
}

function mount(view: string, columns: number) {
  const term = new Terminal(columns);
  const t0 = Date.now() - 300_000;
  let push: (e: SlmEvent) => void;
  let element: React.ReactElement;
  let evs: SlmEvent[];
  if (view === "finetune") {
    const store = new FinetuneStore();
    [push, element, evs] = [(e) => store.push(e), <FinetuneView store={store} />, finetuneEvents(t0)];
  } else {
    const store = new TaskStore();
    [push, element, evs] = [(e) => store.push(e), <TaskView store={store} />, events(VIEWS[view]!, t0)];
  }
  const app = render(element, { stdout: term as never, debug: true, patchConsole: false, exitOnCtrlC: false });
  return { term, app, push, evs };
}

const tooWide = (frame: string, columns: number) => lines(frame).filter((l) => displayWidth(l) > columns);

describe("every live view fits the terminal's width", () => {
  for (const view of ["pull", "quantize", "gptq", "imatrix", "convert", "finetune", "eval", "sweep", "setup"]) {
    for (const columns of [60, 80, 120]) {
      it(`${view} at ${columns} columns`, async () => {
        const { term, app, push, evs } = mount(view, columns);
        for (const e of evs) push(e);
        await tick();
        const last = term.frames[term.frames.length - 1]!;
        app.unmount();
        // Each running line on one row of its own: the live rows start at the first "›" (the finished
        // lines above it are printed once and may wrap), and a fine-tune's panel below it is the speed
        // line, the loss line, six rows of chart and its axis.
        const rows = lines(last).filter(Boolean);
        const first = rows.findIndex((r) => r.startsWith("› "));
        expect(first, plain(last)).toBeGreaterThanOrEqual(0);
        if (view === "finetune") {
          expect(rows.slice(first + 1), plain(last)).toHaveLength(9);
          expect(rows[first + 1]).toMatch(/^ {2}[█░]+ {2}step 400\/12000 \(3%\)/);
          expect(rows[first + 2]).toMatch(/^ {2}loss 0\.\d{4} \(best 0\.\d{4}\)/);
        } else {
          const active = VIEWS[view]!.filter((e) => e.type === "step" && e.status === "start").length;
          expect(rows.slice(first), plain(last)).toHaveLength(active);
          for (const r of rows.slice(first)) expect(r).toMatch(/^› \S/);
        }
        // …and no line of any frame it drew is wider than the terminal.
        for (const frame of term.frames) expect(tooWide(frame, columns), plain(frame)).toEqual([]);
      });
    }
  }

  it("lays out again when the terminal narrows (resize)", async () => {
    const { term, app, push, evs } = mount("pull", 120);
    for (const e of evs) push(e);
    await tick();
    expect(plain(term.frames[term.frames.length - 1]!)).toContain("ETA");
    term.resize(60);
    await tick();
    const after = term.frames[term.frames.length - 1]!;
    app.unmount();
    // The finished lines above were printed once, at 120 columns; the live line is drawn anew.
    const live = lines(after).find((l) => l.startsWith("›"))!;
    expect(displayWidth(live), live).toBeLessThanOrEqual(60);
    // At 60 columns the time left goes before the rate, the rate before the amount.
    expect(live).toMatch(/Q4_K_M\.gguf █+░+ 25%/);
    expect(live).not.toContain("ETA");
  });
});

describe("the layout of one line", () => {
  const f = (key: string, text: string, priority: number, min?: number) => ({ key, text, priority, min });
  const fields = [f("title", "big-model.Q4_K_M.gguf", Infinity, 16), f("pct", "45%", 90), f("bytes", "1.2 GB / 2.5 GB", 50), f("rate", "25.3 MB/s", 40), f("eta", "ETA 1m02s", 30)];

  it("drops the ETA first, then the rate, then the bytes, then shortens the label in the middle", () => {
    expect(fitText(fields, 80)).toBe("big-model.Q4_K_M.gguf 45% 1.2 GB / 2.5 GB 25.3 MB/s ETA 1m02s");
    expect(fitText(fields, 61)).toBe("big-model.Q4_K_M.gguf 45% 1.2 GB / 2.5 GB 25.3 MB/s ETA 1m02s");
    // The label gives up columns down to its floor (16) before a field is dropped…
    expect(fitText(fields, 60)).toBe("big-model.…_K_M.gguf 45% 1.2 GB / 2.5 GB 25.3 MB/s ETA 1m02s");
    expect(fitText(fields, 55)).toBe("big-model.Q4_K_M.gguf 45% 1.2 GB / 2.5 GB 25.3 MB/s");
    expect(fitText(fields, 45)).toBe("big-model.Q4_K_M.gguf 45% 1.2 GB / 2.5 GB");
    expect(fitText(fields, 30)).toBe("big-model.Q4_K_M.gguf 45%");
    // …and below its floor only when nothing else is left to drop.
    expect(fitText(fields, 14)).toBe("big-mod…M.gguf");
    // Never wider than asked, however narrow.
    for (let w = 1; w <= 90; w++) expect(displayWidth(fitText(fields, w))).toBeLessThanOrEqual(w);
    expect(fitLine(fields, 30).map((p) => p.key)).toEqual(["title", "pct"]);
  });

  it("counts wide characters as two columns and shortens them whole", () => {
    expect(displayWidth("模型-Q4.gguf")).toBe(12);
    const t = truncateMiddle("大型语言模型权重文件-Q4_K_M.gguf", 12);
    expect(displayWidth(t)).toBeLessThanOrEqual(12);
    expect(t).toMatch(/…/);
  });
});

describe("a time left only when it means something", () => {
  it("waits for 5 % of the work and 3 seconds", () => {
    // A 6-second conversion whose first tensors were slow: no ETA of minutes after half a second.
    expect(etaSeconds(2, 291, 4, 0.5)).toBeUndefined();
    expect(etaSeconds(10, 291, 4, 2.5)).toBeUndefined();
    expect(etaSeconds(10, 100, 2, 5)).toBe(45);
    expect(etaSeconds(100, 100, 2, 50)).toBeUndefined();
    expect(etaSeconds(10, undefined, 2, 5)).toBeUndefined();
  });
});
