/**
 * `slm bench` on an ONNX model against a plain Python onnxruntime loop (bench/onnx_loop.py), same model file,
 * threads and lengths, in one run; and the same weights as GGUF on llama.cpp (`slm bench` of the GGUF).
 *
 *   npx tsx bench/onnx_runtime.ts [--python PY] [--threads 1] [-p 512] [-n 128] [-r 3] [--rounds 3]
 *                                 [--dtypes fp32,q4] [--max-others 0.3] [--retries 2] [--keep DIR]
 *
 * The model: a SmolLM2-135M-shaped Llama with random weights (bench/random_hf_llama.py, float32), exported by
 * recipes/export_onnx.py (what `slm export --format onnx` runs) into one folder, converted by `slm convert --outtype f32`
 * (+ `slm quantize --type Q4_0` / `Q8_0` for q4 / q8: the GGUF types closest to onnxruntime's 4-bit
 * MatMulNBits with blocks of 32 and to its dynamic int8). tiny-arith would measure per-call overhead only.
 *
 * For each dtype, `rounds` times with the order rotated every round: `slm bench DIR:DTYPE -p P -n N -r R
 * --threads T --json`, `python bench/onnx_loop.py --model DIR --dtype DTYPE --threads T -p P -n N -r R`, and
 * `slm bench GGUF …`. Each figure is the mean over R repetitions after one warm-up, as each side reports it;
 * the table shows the median over rounds, and the ratios slm ONNX / Python loop (the goal: ≥ 0.9× for pp and
 * tg) and slm ONNX / slm GGUF. A round in which other processes used more than --max-others cores is
 * printed, marked disturbed and run again (up to --retries times): the machine may be shared.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { findTools } from "../src/backends/llamacpp/tools.js";
import { type OnnxDtype, variantFile } from "../src/backends/onnx/layout.js";
import { BIN, ROOT, arg, markdownTable, median, printMachine, runBench, runMeasured, table } from "./lib.js";

const python = arg("--python", process.env.SLM_TEST_PYTHON ?? process.env.SLM_PYTHON ?? "python3");
const threads = Number(arg("--threads", "1"));
const pp = Number(arg("-p", "512"));
const tg = Number(arg("-n", "128"));
const reps = Number(arg("-r", "3"));
const rounds = Number(arg("--rounds", "3"));
const dtypes = arg("--dtypes", "fp32,q4").split(",").filter(Boolean);
const maxOthers = Number(arg("--max-others", "0.3"));
const retries = Number(arg("--retries", "2"));
const keep = process.argv.includes("--keep") ? path.resolve(arg("--keep", "")) : undefined;

/** The llama.cpp type set against each ONNX dtype (see the header). */
const GGUF_TYPE: Record<string, string> = { fp32: "F32", q8: "Q8_0", q4: "Q4_0" };

type Side = "slm onnx" | "python loop" | "slm gguf";
interface Measurement {
  side: Side;
  pp?: number;
  tg?: number;
  load: number;
  others: number;
}

interface SlmBenchJson {
  settings: { threads: number };
  tests: { kind: "pp" | "tg"; mean: number; stddev: number }[];
}

function slmBench(env: NodeJS.ProcessEnv, ref: string, side: Side): Measurement {
  const r = runMeasured(process.execPath, [BIN, "bench", ref, "-p", String(pp), "-n", String(tg), "-r", String(reps), "--threads", String(threads), "--json"], env);
  const data = (JSON.parse(r.stdout.trim().split("\n").pop()!) as { data: SlmBenchJson }).data;
  if (data.settings.threads !== threads) throw new Error(`slm bench ran ${data.settings.threads} threads, not ${threads}`);
  return { side, pp: data.tests.find((t) => t.kind === "pp")?.mean, tg: data.tests.find((t) => t.kind === "tg")?.mean, load: r.load, others: r.others };
}

function pythonLoop(dir: string, dtype: string): Measurement {
  const r = runMeasured(python, [path.join(ROOT, "bench", "onnx_loop.py"), "--model", dir, "--dtype", dtype, "--threads", String(threads), "-p", String(pp), "-n", String(tg), "-r", String(reps)], { ...process.env, OMP_NUM_THREADS: String(threads) });
  const data = JSON.parse(r.stdout.trim().split("\n").pop()!) as { pp: { mean: number } | null; tg: { mean: number } | null };
  return { side: "python loop", pp: data.pp?.mean, tg: data.tg?.mean, load: r.load, others: r.others };
}

/** `slm … --json` in the bench's SLM_HOME; returns the result's data. */
function slmJson<T>(env: NodeJS.ProcessEnv, args: string[]): { data: T; wall: number } {
  const r = runMeasured(process.execPath, [BIN, ...args, "--json"], env);
  return { data: (JSON.parse(r.stdout.trim().split("\n").pop()!) as { data: T }).data, wall: r.wall };
}

const f = (n: number | undefined, d = 1) => (n === undefined ? "–" : n.toFixed(d));

async function main(): Promise<void> {
  printMachine();
  const work = keep ?? mkdtempSync(path.join(tmpdir(), "slm-bench-onnx-"));
  mkdirSync(work, { recursive: true });
  const [quantizeTool] = await findTools(["llama-quantize"]);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    SLM_HOME: path.join(work, "slm-home"),
    SLM_PYTHON: python,
    OMP_NUM_THREADS: String(threads),
    CI: "1",
    ...(quantizeTool?.path ? { SLM_LLAMA_CPP_DIR: path.dirname(quantizeTool.path) } : {}),
  };
  try {
    const hf = path.join(work, "smollm2-135m-hf");
    if (!existsSync(path.join(hf, "config.json"))) console.log(runMeasured(python, [path.join(ROOT, "bench", "random_hf_llama.py"), "--shape", "smollm2-135m", "--out", hf, "--dtype", "float32"], env).stdout.trim());
    // recipes/export_onnx.py, what `slm export --format onnx` runs, with all the dtypes in one run.
    const onnx = path.join(work, "smol-onnx");
    const missing = dtypes.filter((d) => !existsSync(path.join(onnx, variantFile(d as OnnxDtype))));
    if (missing.length > 0) {
      const cfg = path.join(work, "export.json");
      writeFileSync(cfg, JSON.stringify({ model: hf, output_dir: onnx, dtypes: missing, threads }));
      const r = runMeasured(python, [path.join(ROOT, "recipes", "export_onnx.py"), "--config", cfg], env);
      console.log(`export to ONNX (${missing.join(", ")}): ${r.wall.toFixed(1)} s`);
    }
    // The same weights as GGUF: F32 converted once, the quantized types from it.
    const registered = (name: string) => existsSync(path.join(env.SLM_HOME!, "registry.json")) && name in (JSON.parse(readFileSync(path.join(env.SLM_HOME!, "registry.json"), "utf8")) as { models: Record<string, unknown> }).models;
    const ggufs: Record<string, string> = {};
    for (const dtype of dtypes) {
      const type = GGUF_TYPE[dtype];
      if (!type) continue;
      for (const [name, args] of [
        ["smol-F32", ["convert", hf, "--outtype", "f32", "--out", "smol-F32"]],
        [`smol-${type}`, ["quantize", "smol-F32", "--type", type, "--out", `smol-${type}`]],
      ] as const) {
        if (registered(name)) continue;
        const r = slmJson<unknown>(env, [...args]);
        console.log(`slm ${args[0]} → ${name}: ${r.wall.toFixed(1)} s`);
      }
      ggufs[dtype] = `smol-${type}`;
    }
    console.log(`slm: ${BIN}; python: ${python}; threads ${threads}; pp${pp} tg${tg}; -r ${reps}; ${rounds} rounds; dtypes ${dtypes.join(",")}`);

    const all: { dtype: string; m: Measurement[] }[] = [];
    for (const dtype of dtypes) {
      for (let round = 0; round < rounds; round++) {
        const sides: (() => Measurement)[] = [() => slmBench(env, `${onnx}:${dtype}`, "slm onnx"), () => pythonLoop(onnx, dtype)];
        if (ggufs[dtype]) sides.push(() => slmBench(env, ggufs[dtype]!, "slm gguf"));
        const order = sides.map((_, i) => sides[(i + round) % sides.length]!);
        let m: Measurement[] = [];
        for (let attempt = 0; attempt <= retries; attempt++) {
          m = order.map((s) => s());
          for (const x of m) console.log(`  ${dtype} round ${round + 1} ${x.side.padEnd(11)} pp ${f(x.pp)}  tg ${f(x.tg)}  (load ${x.load.toFixed(2)}, others ${x.others.toFixed(2)} cores)`);
          const worst = Math.max(...m.map((x) => x.others));
          if (worst <= maxOthers) break;
          console.log(`  ${dtype} round ${round + 1}: disturbed (other processes on ${worst.toFixed(2)} cores > ${maxOthers})${attempt < retries ? ", repeating it" : ", kept: out of retries"}`);
        }
        all.push({ dtype, m });
      }
    }

    const header = ["model", "test", "slm ONNX t/s", "Python ORT loop t/s", "slm / loop", "per round", "GGUF", "slm GGUF t/s", "ONNX / GGUF", "others' cores (max)"];
    const rows: string[][] = [];
    for (const dtype of dtypes) {
      const mine = all.filter((a) => a.dtype === dtype);
      for (const test of ["pp", "tg"] as const) {
        const n = test === "pp" ? pp : tg;
        if (n === 0) continue;
        const val = (side: Side) => mine.map((a) => a.m.find((x) => x.side === side)?.[test]).filter((v): v is number => v !== undefined);
        const [s, l, g] = [val("slm onnx"), val("python loop"), val("slm gguf")];
        rows.push([
          `SmolLM2-135M-shaped ${dtype}`,
          `${test}${n}`,
          s.map((v) => f(v)).join(" / "),
          l.map((v) => f(v)).join(" / "),
          `${(median(s) / median(l)).toFixed(2)}×`,
          s.map((v, i) => (v / l[i]!).toFixed(2)).join(" / "),
          GGUF_TYPE[dtype] ?? "–",
          g.length ? g.map((v) => f(v)).join(" / ") : "–",
          g.length ? `${(median(s) / median(g)).toFixed(2)}×` : "–",
          Math.max(...mine.flatMap((a) => a.m.map((x) => x.others))).toFixed(2),
        ]);
      }
    }
    console.log(`\n${table(header, rows)}\n\n${markdownTable(header, rows)}`);
  } finally {
    if (!keep) rmSync(work, { recursive: true, force: true });
  }
}

runBench(main);
