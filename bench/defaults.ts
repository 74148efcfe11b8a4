/**
 * Are slm's automatic settings fast? `slm run` at default settings against the best settings found by
 * hand, on the same model, in one run.
 *
 *   npx tsx bench/defaults.ts [--rounds 3] [-n 100] [--batches 64,128,256,512|none] [--slm-bin PATH] [--keep DIR]
 *
 * Model: a random-weight SmolLM2-135M-shaped Q8_0 (bench/ggufWriter.ts + llama-quantize), written to a
 * temp folder (or DIR with --keep, reused when present).
 *
 * 1. Threads. `slm run FILE PROMPT --raw -n N --temperature 0 --json` with no --threads (the default)
 *    and with --threads 1 … nproc, `rounds` times, the order rotated every round. The prompt is a fixed
 *    text of ~130 tokens (the synthetic vocabulary splits words into bytes); greedy decoding of random
 *    weights never emits the end token here, so every run generates exactly N tokens (checked). Time to
 *    first token (prompt processing included, model load excluded) and tokens/s after it come from
 *    run's --json timings; the table shows medians over rounds.
 * 2. Batch size. `slm run` has no --batch flag, and for a prompt shorter than the batch the batch size
 *    does not matter (the prompt is one decode). What it changes is how a long prompt is processed,
 *    which `slm bench -p 512 -n 0` measures directly: node-llama-cpp's default (min(context, 512))
 *    against each size in --batches, at the default thread count.
 *
 * The automatic choice should be within 10 % of the best on each figure. Load is printed with every
 * measurement (1-minute load average before it, and the cores' worth of CPU other processes used
 * while it ran, from /proc/stat).
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import path from "node:path";
import { findTools } from "../src/backends/llamacpp/tools.js";
import { SMOLLM2_135M, writeLlamaGguf } from "./ggufWriter.js";
import { BIN, arg, childrenCpuSeconds, machine, machineCpuSeconds, markdownTable, median, printMachine, runBench, table } from "./lib.js";

const rounds = Number(arg("--rounds", "3"));
const genTokens = Number(arg("-n", "100"));
// "none" skips the batch sweep.
const batchArg = arg("--batches", "64,128,256,512");
const batches = batchArg === "none" ? [] : batchArg.split(",").map(Number);
const slmBin = path.resolve(arg("--slm-bin", BIN));
const keep = process.argv.includes("--keep") ? path.resolve(arg("--keep", "")) : undefined;
const cores = Number(machine().nproc);
const PROMPT = "The quick brown fox jumps over the lazy dog. Once upon a time in a land far away there lived";

interface Timed<T> {
  value: T;
  load: number;
  others: number;
}

/** Runs slm with --json and returns its result's data, with the machine's load around it. */
function slmJson<T>(args: string[]): Timed<T> {
  const load = loadavg()[0]!;
  const busy0 = machineCpuSeconds().busy;
  const own0 = childrenCpuSeconds();
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [slmBin, ...args, "--json"], { encoding: "utf8", maxBuffer: 64 << 20 });
  const wall = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`slm ${args.join(" ")} failed (${r.status}):\n${(r.stderr ?? "").slice(-2000)}\n${(r.stdout ?? "").slice(-2000)}`);
  const others = Math.max(0, machineCpuSeconds().busy - busy0 - (childrenCpuSeconds() - own0)) / wall;
  const last = JSON.parse(r.stdout.trim().split("\n").pop()!) as { data: T };
  return { value: last.data, load, others };
}

interface RunJson {
  completionTokens: number;
  timings: { firstTokenMs: number; tokensPerSecond: number };
  settings: { threads: number };
}
interface BenchJson {
  settings: { threads: number; batchSize: number };
  tests: { kind: string; mean: number; stddev: number }[];
}

const f = (n: number, d = 1) => n.toFixed(d);

async function main(): Promise<void> {
  printMachine();
  const [quantize] = await findTools(["llama-quantize"]);
  if (!quantize?.path) throw new Error("llama-quantize not found: run `slm setup llama.cpp` first (or set SLM_LLAMA_CPP_DIR).");
  const work = keep ?? mkdtempSync(path.join(tmpdir(), "slm-bench-defaults-"));
  mkdirSync(work, { recursive: true });
  try {
    const f16 = path.join(work, "smollm2-135m-shaped-f16.gguf");
    const model = path.join(work, "smollm2-135m-shaped-q8_0.gguf");
    if (!existsSync(model)) {
      if (!existsSync(f16)) writeLlamaGguf(f16, SMOLLM2_135M);
      const q = spawnSync(quantize.path, [f16, model, "Q8_0"], { encoding: "utf8" });
      if (q.status !== 0) throw new Error(`llama-quantize failed:\n${q.stderr}`);
    }
    console.log(`model: ${model}; slm: ${slmBin}; ${rounds} rounds; -n ${genTokens}; ${cores} cores`);

    // 1. Threads: the default against each explicit count, order rotated per round.
    const configs: { label: string; args: string[] }[] = [{ label: "default", args: [] }, ...Array.from({ length: cores }, (_, i) => ({ label: `--threads ${i + 1}`, args: ["--threads", String(i + 1)] }))];
    const results = new Map<string, { ttft: number[]; tps: number[]; threads: number[]; others: number[] }>();
    for (let round = 0; round < rounds; round++) {
      for (let k = 0; k < configs.length; k++) {
        const c = configs[(k + round) % configs.length]!;
        const r = slmJson<RunJson>(["run", model, PROMPT, "--raw", "-n", String(genTokens), "--temperature", "0", ...c.args]);
        if (r.value.completionTokens !== genTokens) throw new Error(`${c.label}: generated ${r.value.completionTokens} tokens, not ${genTokens}`);
        const e = results.get(c.label) ?? { ttft: [], tps: [], threads: [], others: [] };
        e.ttft.push(r.value.timings.firstTokenMs);
        e.tps.push(r.value.timings.tokensPerSecond);
        e.threads.push(r.value.settings.threads);
        e.others.push(r.others);
        results.set(c.label, e);
        console.log(`  round ${round + 1} ${c.label.padEnd(12)} threads ${r.value.settings.threads}  first token ${r.value.timings.firstTokenMs} ms  ${f(r.value.timings.tokensPerSecond)} tokens/s  (load ${r.load.toFixed(2)}, others ${r.others.toFixed(2)} cores)`);
      }
    }
    const med = configs.map((c) => {
      const e = results.get(c.label)!;
      return { label: c.label, threads: [...new Set(e.threads)].join(","), ttft: median(e.ttft), tps: median(e.tps), ttftAll: e.ttft, tpsAll: e.tps, others: Math.max(...e.others) };
    });
    const bestTtft = Math.min(...med.filter((m) => m.label !== "default").map((m) => m.ttft));
    const bestTps = Math.max(...med.filter((m) => m.label !== "default").map((m) => m.tps));
    const header = ["settings", "threads used", "first token ms (rounds)", "median", "vs best", "tokens/s (rounds)", "median", "vs best", "others' cores (max)"];
    const rows = med.map((m) => [m.label, m.threads, m.ttftAll.join(" / "), f(m.ttft, 0), `${f(m.ttft / bestTtft, 2)}×`, m.tpsAll.map((x) => f(x)).join(" / "), f(m.tps), `${f(m.tps / bestTps, 2)}×`, f(m.others, 2)]);
    console.log(`\nslm run, ${genTokens} tokens, Q8_0 (first token: lower is better; tokens/s: higher is better)\n${table(header, rows)}\n\n${markdownTable(header, rows)}`);
    const d = med.find((m) => m.label === "default")!;
    console.log(`\ndefault vs best: first token ${f(d.ttft / bestTtft, 2)}× the best time (target ≤ 1.10), tokens/s ${f(d.tps / bestTps, 2)}× the best (target ≥ 0.90)`);

    // 2. Batch size, on prompt processing (pp512), at the default thread count.
    if (batches.length === 0) return;
    const bconfigs: { label: string; args: string[] }[] = [{ label: "default", args: [] }, ...batches.map((b) => ({ label: `--batch ${b}`, args: ["--batch", String(b)] }))];
    const pp = new Map<string, { v: number[]; batch: number; threads: number; others: number[] }>();
    for (let round = 0; round < rounds; round++) {
      for (let k = 0; k < bconfigs.length; k++) {
        const c = bconfigs[(k + round) % bconfigs.length]!;
        const r = slmJson<BenchJson>(["bench", model, "-p", "512", "-n", "0", "-r", "3", ...c.args]);
        const v = r.value.tests[0]!.mean;
        const e = pp.get(c.label) ?? { v: [], batch: r.value.settings.batchSize, threads: r.value.settings.threads, others: [] };
        e.v.push(v);
        e.others.push(r.others);
        pp.set(c.label, e);
        console.log(`  round ${round + 1} ${c.label.padEnd(12)} batch ${r.value.settings.batchSize} threads ${r.value.settings.threads}  pp512 ${f(v)} tokens/s  (load ${r.load.toFixed(2)}, others ${r.others.toFixed(2)} cores)`);
      }
    }
    const bestPp = Math.max(...bconfigs.filter((c) => c.label !== "default").map((c) => median(pp.get(c.label)!.v)));
    const bheader = ["settings", "batch", "threads", "pp512 tokens/s (rounds)", "median", "vs best", "others' cores (max)"];
    const brows = bconfigs.map((c) => {
      const e = pp.get(c.label)!;
      return [c.label, String(e.batch), String(e.threads), e.v.map((x) => f(x)).join(" / "), f(median(e.v)), `${f(median(e.v) / bestPp, 2)}×`, f(Math.max(...e.others), 2)];
    });
    console.log(`\nslm bench -p 512 -n 0 -r 3, Q8_0\n${table(bheader, brows)}\n\n${markdownTable(bheader, brows)}`);
  } finally {
    if (!keep) rmSync(work, { recursive: true, force: true });
  }
}

runBench(main);
