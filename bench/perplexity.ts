/**
 * Perplexity throughput of slm against llama.cpp's `llama-perplexity`, same model file, text, context
 * and threads, in one run.
 *
 *   npx tsx bench/perplexity.ts [--rounds 3] [--ctx 512] [--chunks 8] [--threads 1] [--type Q8_0]
 *                               [--via auto|cli|backend] [--keep DIR]
 *
 * Writes a random-weight SmolLM2-135M-shaped model (bench/ggufWriter.ts, F16, then llama-quantize to
 * --type unless F16) and a text of `chunks × ctx` words of its synthetic vocabulary (one token each,
 * from a fixed seed), into a temp folder (or DIR with --keep, reused when present). Then, `rounds`
 * times with the order swapped every round:
 *
 * - slm: `slm eval FILE --perplexity TEXT --ctx C --threads T --json` through bin/slm.js (which sets
 *   UV_THREADPOOL_SIZE=1 for eval), when that command exists (`--via cli`; `auto` picks it when
 *   `slm eval --help` lists --perplexity). Otherwise (`--via backend`) this script runs itself as a
 *   child with UV_THREADPOOL_SIZE=1 and calls the backend's perplexity() directly: same code, no CLI.
 * - llama-perplexity: `llama-perplexity -m FILE -f TEXT -c C -t T` (its defaults otherwise: batch 2048,
 *   so it decodes 2048 / C chunks per call on parallel sequences).
 *
 * Both sides are timed on the wall clock of the whole process (load, tokenisation and scoring), and
 * tokens/s = chunks × ctx / seconds (the chunk counts of both must agree). The CPU seconds each
 * process used are shown too (per 1,000 tokens): slm reads rows on its main thread while llama.cpp
 * decodes on another, so it can use more CPU than --threads. The machine's load is printed with every
 * measurement: the 1-minute load average before it and the CPU other processes used while it ran.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { findTools } from "../src/backends/llamacpp/tools.js";
import { SMOLLM2_135M, writeLlamaGguf } from "./ggufWriter.js";
import { BIN, arg, markdownTable, median, printMachine, runBench, runMeasured, table } from "./lib.js";

const rounds = Number(arg("--rounds", "3"));
const ctxSize = Number(arg("--ctx", "512"));
const chunks = Number(arg("--chunks", "8"));
const threads = Number(arg("--threads", "1"));
const type = arg("--type", "Q8_0");
const via = arg("--via", "auto");
const keep = process.argv.includes("--keep") ? path.resolve(arg("--keep", "")) : undefined;

interface Measurement {
  side: "slm" | "llama-perplexity";
  /** Chunks the tool scored: both must agree, and tokens/s count chunks × ctx. */
  chunks: number;
  ppl: number;
  wall: number;
  /** CPU seconds (user + system) of the whole process. */
  cpu: number;
  tokensPerSecond: number;
  /** slm only: the backend's own time for the chunks (no load, no tokenising). */
  evalTokensPerSecond?: number;
  load: number;
  others: number;
}

/** runMeasured with stdout and stderr together (llama-perplexity logs on both). */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): { out: string; wall: number; cpu: number; others: number; load: number } {
  const r = runMeasured(cmd, args, env);
  return { ...r, out: `${r.stdout}\n${r.stderr}` };
}

/** The child side of `--via backend`: one perplexity() call, its result as JSON on stdout. */
async function child(): Promise<void> {
  const { perplexity } = await import("../src/backends/eval/perplexity.js");
  const { resolveModel } = await import("../src/backends/store/resolve.js");
  const r = await perplexity({ model: resolveModel(arg("--model", "")), textFile: arg("--text", ""), ctxSize, threads });
  process.stdout.write(`${JSON.stringify({ type: "result", data: r })}\n`);
}

function cliHasPerplexity(): boolean {
  const r = spawnSync(process.execPath, [BIN, "eval", "--help"], { encoding: "utf8" });
  return r.status === 0 && r.stdout.includes("--perplexity");
}

/** The perplexity figures in slm's --json result, wherever the eval command puts them. */
function findPerplexity(data: unknown): { ppl: number; chunks: number; tokensPerSecond?: number } | undefined {
  if (typeof data !== "object" || data === null) return undefined;
  const o = data as Record<string, unknown>;
  if (typeof o.ppl === "number" && typeof o.chunks === "number") return { ppl: o.ppl, chunks: o.chunks, tokensPerSecond: o.tokensPerSecond as number | undefined };
  for (const v of Object.values(o)) {
    const found = findPerplexity(v);
    if (found) return found;
  }
  return undefined;
}

function slmSide(model: string, text: string, useCli: boolean): Measurement {
  const r = useCli
    ? run(process.execPath, [BIN, "eval", model, "--perplexity", text, "--ctx", String(ctxSize), "--threads", String(threads), "--json"])
    : run(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), "--child", "--model", model, "--text", text, "--ctx", String(ctxSize), "--threads", String(threads)], { ...process.env, UV_THREADPOOL_SIZE: "1" });
  const lines = r.out.split("\n").filter((l) => l.startsWith("{"));
  const last = JSON.parse(lines.filter((l) => l.includes('"result"')).pop() ?? "{}") as { data?: unknown };
  const p = findPerplexity(last.data);
  if (!p) throw new Error(`no perplexity in slm's output:\n${r.out.slice(-2000)}`);
  return { side: "slm", chunks: p.chunks, ppl: p.ppl, wall: r.wall, cpu: r.cpu, tokensPerSecond: (p.chunks * ctxSize) / r.wall, evalTokensPerSecond: p.tokensPerSecond, load: r.load, others: r.others };
}

function llamaSide(tool: string, model: string, text: string): Measurement {
  const r = run(tool, ["-m", model, "-f", text, "-c", String(ctxSize), "-t", String(threads)]);
  const n = /calculating perplexity over (\d+) chunks/.exec(r.out);
  // Its logger may drop the last lines at exit (llama.cpp leaks it on purpose): then the last chunk's running value stands in.
  const m = /Final estimate: PPL = ([\d.]+)/.exec(r.out) ?? /\[\d+\]([\d.]+),\s*$/m.exec(r.out);
  if (!n || !m) throw new Error(`no chunk count or perplexity in llama-perplexity's output:\n${r.out.slice(-2000)}`);
  const c = Number(n[1]);
  return { side: "llama-perplexity", chunks: c, ppl: Number(m[1]), wall: r.wall, cpu: r.cpu, tokensPerSecond: (c * ctxSize) / r.wall, load: r.load, others: r.others };
}

/**
 * `n` characters of [a-z0-9], a newline every 64, from a fixed-seed generator. The synthetic
 * vocabulary has no single-character pieces (only "▁w…" words, which SentencePiece cannot reach by
 * merging), so every character is one byte-fallback token: the text is n tokens, plus BOS and the
 * 3 bytes of the leading "▁".
 */
function syntheticText(n: number): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  let state = 12345;
  let out = "";
  for (let i = 0; i < n; i++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    out += alphabet[(state >>> 16) % alphabet.length];
    if (i % 64 === 63) out += "\n";
  }
  return `${out}\n`;
}

async function main(): Promise<void> {
  if (process.argv.includes("--child")) return child();
  printMachine();
  const [ppl, quantize] = await findTools(["llama-perplexity", "llama-quantize"]);
  if (!ppl?.path || !quantize?.path) throw new Error("llama-perplexity or llama-quantize not found: run `slm setup llama.cpp` first (or set SLM_LLAMA_CPP_DIR).");
  const useCli = via === "cli" || (via === "auto" && cliHasPerplexity());
  console.log(`llama-perplexity: ${ppl.path}; slm: ${useCli ? `${BIN} eval --perplexity` : "backend perplexity() in a child process (UV_THREADPOOL_SIZE=1)"}; ${type}; ctx ${ctxSize}; ${chunks} chunks; threads ${threads}; ${rounds} rounds`);

  const work = keep ?? mkdtempSync(path.join(tmpdir(), "slm-bench-ppl-"));
  mkdirSync(work, { recursive: true });
  try {
    const f16 = path.join(work, "smollm2-135m-shaped-f16.gguf");
    const model = type === "F16" ? f16 : path.join(work, `smollm2-135m-shaped-${type.toLowerCase()}.gguf`);
    if (!existsSync(model)) {
      if (!existsSync(f16)) writeLlamaGguf(f16, SMOLLM2_135M);
      if (model !== f16) run(quantize.path, [f16, model, type]);
    }
    // One token per character (newlines included): chunks × ctx tokens, a few to spare.
    const text = path.join(work, `text-${chunks * ctxSize}.txt`);
    if (!existsSync(text)) writeFileSync(text, syntheticText(Math.ceil((chunks * ctxSize * 64) / 65) + 8));

    const all: Measurement[][] = [];
    for (let round = 0; round < rounds; round++) {
      const sides = [() => slmSide(model, text, useCli), () => llamaSide(ppl.path!, model, text)];
      const order = round % 2 === 0 ? sides : [...sides].reverse();
      const m = order.map((s) => s());
      for (const x of m) {
        console.log(`  round ${round + 1} ${x.side.padEnd(16)} ${x.tokensPerSecond.toFixed(1)} tokens/s (${x.wall.toFixed(2)} s, ${x.cpu.toFixed(1)} CPU-s${x.evalTokensPerSecond ? `, scoring alone ${x.evalTokensPerSecond.toFixed(1)} tokens/s` : ""}), PPL ${x.ppl.toFixed(4)}  (load ${x.load.toFixed(2)}, others ${x.others.toFixed(2)} cores)`);
      }
      all.push(m);
    }
    const pick = (side: Measurement["side"]) => all.map((m) => m.find((x) => x.side === side)!);
    const s = pick("slm");
    const l = pick("llama-perplexity");
    for (const x of all.flat()) if (x.chunks !== all[0]![0]!.chunks) throw new Error(`slm and llama-perplexity scored different chunk counts (${all[0]![0]!.chunks} and ${x.chunks})`);
    const header = ["model", "threads", "ctx", "tokens", "slm t/s (rounds)", "llama-perplexity t/s (rounds)", "slm median", "llama-perplexity median", "ratio", "ratio per round", "CPU-s per 1k tokens slm / llama-perplexity (medians)", "PPL slm / llama-perplexity", "others' cores (max)"];
    const rows = [
      [
        `SmolLM2-135M-shaped ${type}`,
        String(threads),
        String(ctxSize),
        String(all[0]![0]!.chunks * ctxSize),
        s.map((x) => x.tokensPerSecond.toFixed(1)).join(" / "),
        l.map((x) => x.tokensPerSecond.toFixed(1)).join(" / "),
        median(s.map((x) => x.tokensPerSecond)).toFixed(1),
        median(l.map((x) => x.tokensPerSecond)).toFixed(1),
        `${(median(s.map((x) => x.tokensPerSecond)) / median(l.map((x) => x.tokensPerSecond))).toFixed(2)}×`,
        s.map((x, i) => (x.tokensPerSecond / l[i]!.tokensPerSecond).toFixed(2)).join(" / "),
        `${median(s.map((x) => (x.cpu * 1000) / (x.chunks * ctxSize))).toFixed(2)} / ${median(l.map((x) => (x.cpu * 1000) / (x.chunks * ctxSize))).toFixed(2)}`,
        `${s[0]!.ppl.toFixed(2)} / ${l[0]!.ppl.toFixed(2)}`,
        Math.max(...all.flat().map((x) => x.others)).toFixed(2),
      ],
    ];
    console.log(`\n${table(header, rows)}\n\n${markdownTable(header, rows)}`);
  } finally {
    if (!keep) rmSync(work, { recursive: true, force: true });
  }
}

runBench(main);
