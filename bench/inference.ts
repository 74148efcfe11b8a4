/**
 * `slm bench` against llama.cpp's `llama-bench`, same model files, threads and sizes, in one run.
 *
 *   npx tsx bench/inference.ts [--rounds 3] [--reps 5] [--threads 1[,2]] [-p 512] [-n 128]
 *                              [--types F16,Q8_0] [--sequence] [--uv1] [--max-others 0.3] [--retries 3]
 *                              [--slm-bin PATH] [--keep DIR]
 *
 * Writes a random-weight SmolLM2-135M-shaped model in F16 (bench/ggufWriter.ts) and a Q8_0 of it
 * (llama-quantize) into a temp folder (or DIR with --keep, reused when present). Then, for each type
 * and thread count, `rounds` times with the order swapped every round: `slm bench FILE -p P -n N -r R
 * --threads T --json` and `llama-bench -m FILE -t T -p P -n N -r R -o json`. Each figure is a mean over R
 * repetitions as the tool reports it; the table shows the median over rounds of those means, the
 * ratio slm / llama-bench of the medians, and the ratio of each round's pair (taken minutes apart, so
 * drifting load hits both sides alike).
 *
 * --sequence adds `slm bench --api sequence` (node-llama-cpp's public per-token API, what run and
 * chat use) to every round, to show what that path costs. --uv1 adds `slm bench` with
 * UV_THREADPOOL_SIZE=1 in its environment (one libuv worker thread runs every llama_decode; see
 * docs/benchmarks.md for why that matters with more than one thread).
 *
 * The machine's load is printed with every measurement: the 1-minute load average before it and the
 * CPU other processes used while it ran (from /proc/stat, minus this run's own children), in cores.
 * A round in which other processes used more than --max-others cores (default 0.3) during any of its
 * measurements is printed, marked disturbed and run again, up to --retries times (default 3).
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { findTools } from "../src/backends/llamacpp/tools.js";
import { SMOLLM2_135M, writeLlamaGguf } from "./ggufWriter.js";
import { BIN, arg, markdownTable, median, printMachine, runBench, runMeasured, table } from "./lib.js";

const rounds = Number(arg("--rounds", "3"));
const reps = Number(arg("--reps", "5"));
const threadList = arg("--threads", "1").split(",").map(Number);
const pp = Number(arg("-p", "512"));
const tg = Number(arg("-n", "128"));
const types = arg("--types", "F16,Q8_0").split(",").filter(Boolean);
const withSequence = process.argv.includes("--sequence");
const withUv1 = process.argv.includes("--uv1");
// A round in which other processes used more than this many cores is thrown away and run again (up to
// --retries times): on a 2-core machine a neighbour busy on one core collapses multi-threaded figures.
const maxOthers = Number(arg("--max-others", "0.3"));
const retries = Number(arg("--retries", "3"));
const slmBin = path.resolve(arg("--slm-bin", BIN));
const keep = process.argv.includes("--keep") ? path.resolve(arg("--keep", "")) : undefined;

type Side = "slm" | "slm-sequence" | "slm-uv1" | "llama-bench";
interface Measurement {
  side: Side;
  pp?: number;
  ppSd?: number;
  tg?: number;
  tgSd?: number;
  /** 1-minute load average just before. */
  load: number;
  /** Cores' worth of CPU other processes used while it ran. */
  others: number;
  threads?: number;
}

const run = runMeasured;

interface SlmBenchJson {
  settings: { threads: number };
  tests: { kind: "pp" | "tg"; mean: number; stddev: number }[];
}

function slmBench(file: string, threads: number, api: "decode" | "sequence", uv1 = false): Measurement {
  const env = uv1 ? { ...process.env, UV_THREADPOOL_SIZE: "1" } : process.env;
  const r = run(process.execPath, [slmBin, "bench", file, "-p", String(pp), "-n", String(tg), "-r", String(reps), "--threads", String(threads), "--api", api, "--json"], env);
  const last = r.stdout.trim().split("\n").pop()!;
  const data = (JSON.parse(last) as { data: SlmBenchJson }).data;
  const p = data.tests.find((t) => t.kind === "pp");
  const g = data.tests.find((t) => t.kind === "tg");
  return { side: uv1 ? "slm-uv1" : api === "decode" ? "slm" : "slm-sequence", pp: p?.mean, ppSd: p?.stddev, tg: g?.mean, tgSd: g?.stddev, load: r.load, others: r.others, threads: data.settings.threads };
}

interface LlamaBenchJson {
  n_prompt: number;
  n_gen: number;
  n_threads: number;
  avg_ts: number;
  stddev_ts: number;
}

function llamaBench(tool: string, file: string, threads: number): Measurement {
  const r = run(tool, ["-m", file, "-t", String(threads), "-p", String(pp), "-n", String(tg), "-r", String(reps), "-o", "json"]);
  const rows = JSON.parse(r.stdout) as LlamaBenchJson[];
  const p = rows.find((x) => x.n_prompt > 0 && x.n_gen === 0);
  const g = rows.find((x) => x.n_gen > 0 && x.n_prompt === 0);
  return { side: "llama-bench", pp: p?.avg_ts, ppSd: p?.stddev_ts, tg: g?.avg_ts, tgSd: g?.stddev_ts, load: r.load, others: r.others, threads: rows[0]?.n_threads };
}

const f = (n: number | undefined, d = 1) => (n === undefined ? "–" : n.toFixed(d));

async function main(): Promise<void> {
  printMachine();
  const [bench, quantize] = await findTools(["llama-bench", "llama-quantize"]);
  if (!bench?.path || !quantize?.path) throw new Error("llama-bench or llama-quantize not found: run `slm setup llama.cpp` first (or set SLM_LLAMA_CPP_DIR).");
  console.log(`llama-bench: ${bench.path}; slm: ${slmBin}; threads ${threadList.join(",")}; pp${pp} tg${tg}; -r ${reps}; ${rounds} rounds`);

  const work = keep ?? mkdtempSync(path.join(tmpdir(), "slm-bench-inference-"));
  mkdirSync(work, { recursive: true });
  try {
    const files: Record<string, string> = { F16: path.join(work, "smollm2-135m-shaped-f16.gguf"), Q8_0: path.join(work, "smollm2-135m-shaped-q8_0.gguf") };
    if (!existsSync(files.F16!)) {
      const { parameters, bytes } = writeLlamaGguf(files.F16!, SMOLLM2_135M);
      console.log(`wrote ${SMOLLM2_135M.name}: ${(parameters / 1e6).toFixed(1)}M parameters, F16, ${(bytes / 1e6).toFixed(0)} MB`);
    }
    if (types.includes("Q8_0") && !existsSync(files.Q8_0!)) run(quantize.path, [files.F16!, files.Q8_0!, "Q8_0"]);

    const all: { type: string; threads: number; round: number; m: Measurement[] }[] = [];
    for (const type of types) {
      const file = files[type];
      if (!file) throw new Error(`unknown type ${type} (F16 or Q8_0)`);
      for (const threads of threadList) {
        for (let round = 0; round < rounds; round++) {
          const sides: (() => Measurement)[] = [() => slmBench(file, threads, "decode"), () => llamaBench(bench.path!, file, threads)];
          if (withSequence) sides.push(() => slmBench(file, threads, "sequence"));
          if (withUv1) sides.push(() => slmBench(file, threads, "decode", true));
          // Rotate the order each round so neither side always runs first (or right after the other).
          const order = sides.map((_, i) => sides[(i + round) % sides.length]!);
          let m: Measurement[] = [];
          for (let attempt = 0; attempt <= retries; attempt++) {
            m = order.map((s) => s());
            const worst = Math.max(...m.map((x) => x.others));
            for (const x of m) console.log(`  ${type} t${threads} round ${round + 1} ${x.side.padEnd(12)} pp ${f(x.pp)} ± ${f(x.ppSd)}  tg ${f(x.tg)} ± ${f(x.tgSd)}  (load ${x.load.toFixed(2)}, others ${x.others.toFixed(2)} cores)`);
            if (worst <= maxOthers) break;
            console.log(`  ${type} t${threads} round ${round + 1}: disturbed (other processes on ${worst.toFixed(2)} cores > ${maxOthers})${attempt < retries ? ", repeating it" : ", kept: out of retries"}`);
          }
          all.push({ type, threads, round, m });
        }
      }
    }

    const header = ["model", "threads", "test", "slm t/s (rounds)", "llama-bench t/s (rounds)", "slm median", "llama-bench median", "ratio", "ratio per round", ...(withSequence ? ["sequence API median", "sequence ratio"] : []), ...(withUv1 ? ["UV_THREADPOOL_SIZE=1 median", "its ratio"] : []), "others' cores (max)"];
    const rows: string[][] = [];
    for (const type of types) {
      for (const threads of threadList) {
        const mine = all.filter((a) => a.type === type && a.threads === threads);
        for (const test of ["pp", "tg"] as const) {
          const n = test === "pp" ? pp : tg;
          if (n === 0) continue;
          const val = (side: Side) => mine.map((a) => a.m.find((x) => x.side === side)?.[test]).filter((v): v is number => v !== undefined);
          const s = val("slm");
          const l = val("llama-bench");
          const q = val("slm-sequence");
          const u = val("slm-uv1");
          const perRound = s.map((v, i) => (l[i] ? v / l[i]! : NaN));
          const others = Math.max(...mine.flatMap((a) => a.m.map((x) => x.others)));
          rows.push([
            `SmolLM2-135M-shaped ${type}`,
            String(threads),
            `${test}${n}`,
            s.map((v) => f(v)).join(" / "),
            l.map((v) => f(v)).join(" / "),
            f(median(s)),
            f(median(l)),
            `${(median(s) / median(l)).toFixed(2)}×`,
            perRound.map((v) => v.toFixed(2)).join(" / "),
            ...(withSequence ? [f(median(q)), `${(median(q) / median(l)).toFixed(2)}×`] : []),
            ...(withUv1 ? [f(median(u)), `${(median(u) / median(l)).toFixed(2)}×`] : []),
            others.toFixed(2),
          ]);
        }
      }
    }
    console.log(`\n${table(header, rows)}\n\n${markdownTable(header, rows)}`);
  } finally {
    if (!keep) rmSync(work, { recursive: true, force: true });
  }
}

runBench(main);
