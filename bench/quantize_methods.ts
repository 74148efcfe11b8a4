/**
 * Quantization methods side by side: GPTQ, AWQ and round-to-nearest (recipes/quantize_hf.py, the standard
 * GPU checkpoints) against llama.cpp's K-quants (plain, with an importance matrix, with AWQ's scales), on
 * quality and on time.
 *
 *   npx tsx bench/quantize_methods.ts [--quality] [--time] [--python PY] [--threads 2]
 *                                     [--samples 128] [--time-samples 8] [--seq-len 512] [--keep]
 *
 * --samples: calibration windows of the quality runs; --time-samples and --seq-len: those of the time runs.
 *
 * Quality (tiny-arith, test/fixtures/tiny-arith): every variant made from the HF folder with the same
 * calibration data (data/add-train.jsonl, chat JSONL; --samples windows of 256 tokens, tiny-arith's context;
 * llama-imatrix reads as many chunks of the same length), then ONE `slm eval` of all of them against the F32 GGUF: size on
 * disk (a GPTQ/AWQ folder's files, a GGUF file), KL divergence from F32 and perplexity on data/eval-text.txt,
 * KL divergence on add-eval's sums written as plain text (see quality()), exact match on all 500 lines of
 * data/add-eval.jsonl. GPTQ/AWQ/RTN folders are scored through the GGUF slm
 * converts them to once (F16 rounds the dequantized weights by at most half an F16 step: docs/run.md measures it).
 * Variants: F32; RTN, GPTQ, GPTQ with act-order at 4 bits g128; AWQ 4-bit g128; Q4_K_M plain, with
 * `--calibration` (imatrix), with AWQ's scales (`--method awq --type Q4_K_M`); at 2 bits RTN and GPTQ (g128),
 * Q2_K with imatrix (slm refuses Q2_K without one, and AWQ-scaled types of 3 bits or fewer: tried, the refusal
 * printed).
 *
 * Time: a SmolLM2-135M-shaped model with random weights (bench/random_hf_llama.py, bfloat16 like the real
 * checkpoint) quantized on this machine's CPU by each recipe method and by llama.cpp (`slm quantize --type
 * Q4_K_M`: convert to F16 + llama-quantize; and with `--calibration`: + llama-imatrix), all with --threads
 * threads and the same calibration tokens (--time-samples windows of --seq-len for the recipes, as many chunks
 * for llama-imatrix: 8 × 512 by default, a sixteenth of the recipes' default, to keep a run on a shared
 * 2-core machine within minutes; the time of the data-driven part grows about linearly with the tokens). Ratios against round-to-nearest and Q4_K_M. Other processes' CPU use
 * while each ran is printed (a shared machine disturbs the figures).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { EvalResult, ModelResult } from "../src/backends/eval/evaluate.js";
import type { GenerationScore } from "../src/backends/eval/generation.js";
import { findTools } from "../src/backends/llamacpp/tools.js";
import type { ModelEntry } from "../src/backends/store/types.js";
import { BIN, ROOT, arg, markdownTable, printMachine, runBench, runMeasured, table } from "./lib.js";

const FIX = path.join(ROOT, "test", "fixtures", "tiny-arith");
const HF = path.join(FIX, "hf");
const F32 = path.join(FIX, "gguf", "tiny-arith-f32.gguf");
const CALIBRATION = path.join(FIX, "data", "add-train.jsonl");
const TEXT = path.join(FIX, "data", "eval-text.txt");
const TASK = path.join(FIX, "data", "add-eval.jsonl");

const python = arg("--python", process.env.SLM_TEST_PYTHON ?? process.env.SLM_PYTHON ?? "python3");
const threads = Number(arg("--threads", "2"));
const samples = Number(arg("--samples", "128"));
const timeSamples = Number(arg("--time-samples", "8"));
/** tiny-arith's context: the quality runs' window (slm refuses a longer --seq-len; the recipe would cap it). */
const FIXTURE_CTX = 256;
const seqLen = Number(arg("--seq-len", "512"));
const doQuality = process.argv.includes("--quality") || !process.argv.includes("--time");
const doTime = process.argv.includes("--time") || !process.argv.includes("--quality");

interface Measured {
  wall: number;
  others: number;
}

interface RecipeResult {
  output_dir: string;
  seconds: number;
  size: number;
  peak_memory_bytes: number;
  calibration_tokens: number;
}

/** recipes/quantize_hf.py with a config of PLAN11's contract 1; returns its result and the measured run. */
function recipe(work: string, config: Record<string, unknown>, windows: number, windowLen: number): { result: RecipeResult } & Measured {
  const cfg = path.join(work, `cfg-${Date.now()}-${Math.random().toString(36).slice(2)}.json`);
  // Round-to-nearest needs no data: without calibration the recipe runs no forward pass (with it, it would run
  // them only to report each layer's output error), so its time is the rounding alone.
  const data = config.method === "rtn" ? {} : { samples: windows, seq_len: windowLen, calibration: { file: CALIBRATION, format: "chat-jsonl" } };
  writeFileSync(cfg, JSON.stringify({ task: "quantize", output: "packed", device: "cpu", threads, ...data, ...config }));
  const r = runMeasured(python, [path.join(ROOT, "recipes", "quantize_hf.py"), "--config", cfg], { ...process.env, OMP_NUM_THREADS: String(threads) });
  const last = JSON.parse(r.stdout.trim().split("\n").pop()!) as { type: string; data: RecipeResult };
  return { result: last.data, wall: r.wall, others: r.others };
}

/** `slm … --json` in the bench's SLM_HOME; returns the result event's data and the measured run. */
function slmJson<T>(env: NodeJS.ProcessEnv, args: string[]): { data: T; stdout: string } & Measured {
  const r = runMeasured("node", [BIN, ...args, "--json"], env);
  const last = JSON.parse(r.stdout.trim().split("\n").pop()!) as { type: string; data: T };
  return { data: last.data, stdout: r.stdout, wall: r.wall, others: r.others };
}

function sizeOf(p: string): number {
  const r = runMeasured("du", ["-sb", p]);
  return Number(r.stdout.split(/\s/)[0]);
}

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(2)} MB`;
}

interface Variant {
  label: string;
  /** What slm eval is given: a registered name, a folder or a file. */
  ref: string;
  /** What is measured for size: the folder or the GGUF file. */
  sizePath: string;
  made: string;
}

function quality(work: string, env: NodeJS.ProcessEnv): void {
  const variants: Variant[] = [{ label: "F32", ref: F32, sizePath: F32, made: "the fixture's GGUF" }];
  const packed = (label: string, dir: string, config: Record<string, unknown>) => {
    const out = path.join(work, dir);
    const r = recipe(work, { model: HF, output_dir: out, ...config }, samples, FIXTURE_CTX);
    variants.push({ label, ref: out, sizePath: out, made: `recipe ${r.result.seconds.toFixed(1)} s, ${r.result.calibration_tokens} calibration tokens` });
  };
  const gguf = (label: string, name: string, args: string[]) => {
    try {
      // `--method awq --type` reports the GGUF under `gguf` (beside the AWQ step's own report).
      const r = slmJson<{ model?: ModelEntry; gguf?: { model: ModelEntry } }>(env, ["quantize", HF, ...args, "--out", name]);
      variants.push({ label, ref: name, sizePath: (r.data.model ?? r.data.gguf!.model).path, made: `slm quantize ${args.join(" ").replaceAll(FIX + "/", "")} (${r.wall.toFixed(1)} s)` });
    } catch (err) {
      // slm refuses some combinations (plain Q2_K without an importance matrix, AWQ for ≤3-bit types): say so.
      const refusal = /"message":"([^"]*)"/.exec((err as Error).message)?.[1] ?? (err as Error).message.split("\n")[0];
      console.log(`${label}: not made: ${refusal}`);
    }
  };
  const cal = ["--calibration", CALIBRATION, "--chunks", String(samples)];
  const recipeCal = ["--samples", String(samples), "--seq-len", String(FIXTURE_CTX)];
  packed("RTN 4-bit g128", "rtn4", { method: "rtn", bits: 4, group_size: 128 });
  packed("GPTQ 4-bit g128", "gptq4", { method: "gptq", bits: 4, group_size: 128 });
  packed("GPTQ 4-bit g128 act-order", "gptq4-act", { method: "gptq", bits: 4, group_size: 128, desc_act: true });
  packed("AWQ 4-bit g128", "awq4", { method: "awq", bits: 4, group_size: 128, zero_point: true });
  gguf("Q4_K_M", "q4km", ["--type", "Q4_K_M"]);
  gguf("Q4_K_M imatrix", "q4km-imatrix", ["--type", "Q4_K_M", ...cal]);
  gguf("Q4_K_M AWQ scales", "q4km-awq", ["--method", "awq", "--type", "Q4_K_M", "--calibration", CALIBRATION, ...recipeCal]);
  packed("RTN 2-bit g128", "rtn2", { method: "rtn", bits: 2, group_size: 128 });
  packed("GPTQ 2-bit g128", "gptq2", { method: "gptq", bits: 2, group_size: 128 });
  gguf("Q2_K", "q2k", ["--type", "Q2_K"]);
  gguf("Q2_K imatrix", "q2k-imatrix", ["--type", "Q2_K", ...cal]);
  gguf("Q2_K AWQ scales", "q2k-awq", ["--method", "awq", "--type", "Q2_K", "--calibration", CALIBRATION, ...recipeCal]);
  for (const v of variants) console.log(`made ${v.label}: ${v.made}`);

  const ev = slmJson<EvalResult>(env, ["eval", ...variants.map((v) => v.ref), "--task", TASK, "--perplexity", TEXT, "--kld-base", F32, "--no-store"]);
  console.log(`slm eval of ${variants.length} models: ${ev.wall.toFixed(0)} s (conversions of the GPTQ/AWQ folders included)`);
  // eval-text.txt writes the chat markers as literal text, which --perplexity tokenizes as plain characters
  // (as llama-perplexity does): mostly positions tiny-arith never saw. Held-out sums written plainly
  // ("13+54=67", add-eval's 500) are text in its domain: the KLD there separates the methods.
  const sums = path.join(work, "sums.txt");
  writeFileSync(sums, readFileSync(TASK, "utf8").trim().split("\n").map((l) => (JSON.parse(l) as { messages: { content: string }[] }).messages.map((m) => m.content).join("=")).join("\n") + "\n");
  const evSums = slmJson<EvalResult>(env, ["eval", ...variants.map((v) => v.ref), "--perplexity", sums, "--kld-base", F32, "--no-store"]);
  const byRef = new Map<string, ModelResult>(ev.data.models.map((m, i) => [variants[i]!.ref, m]));
  const sumsByRef = new Map<string, ModelResult>(evSums.data.models.map((m, i) => [variants[i]!.ref, m]));
  const header = ["variant", "size", "KLD eval-text", "same top", "ppl eval-text", "KLD sums", "same top sums", "add-eval exact"];
  const rows = variants.map((v) => {
    const k = byRef.get(v.ref)!.kld!;
    const ks = sumsByRef.get(v.ref)!.kld!;
    const acc = (byRef.get(v.ref)!.tasks[0]!.score as GenerationScore).accuracy;
    const pm = (x: { mean: number; meanError: number }) => `${x.mean.toFixed(3)} ± ${x.meanError.toFixed(3)}`;
    return [v.label, mb(sizeOf(v.sizePath)), pm(k), `${(k.sameTop * 100).toFixed(1)} %`, k.ppl.toPrecision(4), pm(ks), `${(ks.sameTop * 100).toFixed(1)} %`, `${(acc.value * 100).toFixed(1)} %`];
  });
  console.log(`\n${table(header, rows)}\n`);
  console.log(markdownTable(header, rows));
  const kld = (label: string, on = byRef) => on.get(variants.find((v) => v.label === label)?.ref ?? "")?.kld?.mean ?? NaN;
  const ratios: [string, string][] = [
    ["GPTQ 4-bit g128", "RTN 4-bit g128"], ["GPTQ 4-bit g128 act-order", "RTN 4-bit g128"], ["AWQ 4-bit g128", "RTN 4-bit g128"],
    ["GPTQ 2-bit g128", "RTN 2-bit g128"], ["Q4_K_M imatrix", "Q4_K_M"], ["Q4_K_M AWQ scales", "Q4_K_M"], ["Q4_K_M AWQ scales", "Q4_K_M imatrix"],
    ["Q2_K imatrix", "Q2_K"], ["Q2_K AWQ scales", "Q2_K"], ["Q2_K AWQ scales", "Q2_K imatrix"],
  ];
  console.log("\nKLD ratios (below 1: the first is closer to F32), on eval-text / on the sums:");
  for (const [a, b] of ratios) console.log(`  ${a} / ${b}: ${(kld(a) / kld(b)).toFixed(3)} / ${(kld(a, sumsByRef) / kld(b, sumsByRef)).toFixed(3)}`);
}

function timing(work: string, env: NodeJS.ProcessEnv): void {
  const model = path.join(work, "smollm2-135m");
  const made = runMeasured(python, [path.join(ROOT, "bench", "random_hf_llama.py"), "--shape", "smollm2-135m", "--out", model, "--dtype", "bfloat16"], { ...process.env, OMP_NUM_THREADS: String(threads) });
  console.log(made.stdout.trim());
  const rows: { label: string; wall: number; inner: string; others: number }[] = [];
  // Groups of 64: SmolLM2's 576 channels are not a multiple of 128, which AWQ's format needs (GPTQ's would
  // take a short last group).
  for (const [label, config] of [
    ["RTN 4-bit g64", { method: "rtn", bits: 4, group_size: 64 }],
    ["GPTQ 4-bit g64", { method: "gptq", bits: 4, group_size: 64 }],
    ["AWQ 4-bit g64", { method: "awq", bits: 4, group_size: 64, zero_point: true }],
  ] as const) {
    const out = path.join(work, `smol-${config.method}`);
    const r = recipe(work, { model, output_dir: out, ...config }, timeSamples, seqLen);
    rows.push({ label, wall: r.wall, inner: `recipe ${r.result.seconds.toFixed(1)} s, ${r.result.calibration_tokens} tokens, RSS ${(r.result.peak_memory_bytes / 2 ** 30).toFixed(2)} GiB`, others: r.others });
    rmSync(out, { recursive: true, force: true });
    console.log(`${label}: ${r.wall.toFixed(1)} s (${rows.at(-1)!.inner})`);
  }
  for (const [label, args] of [
    ["llama.cpp Q4_K_M", ["--type", "Q4_K_M"]],
    ["llama.cpp Q4_K_M imatrix", ["--type", "Q4_K_M", "--calibration", CALIBRATION, "--chunks", String(timeSamples)]],
    ["AWQ scales + Q4_K_M", ["--method", "awq", "--type", "Q4_K_M", "--calibration", CALIBRATION, "--samples", String(timeSamples), "--seq-len", String(seqLen)]],
  ] as const) {
    const r = slmJson<{ model: ModelEntry }>(env, ["quantize", model, ...args, "--threads", String(threads), "--out", `smol-${rows.length}`]);
    rows.push({ label, wall: r.wall, inner: phases(r.stdout), others: r.others });
    console.log(`${label}: ${r.wall.toFixed(1)} s (${rows.at(-1)!.inner})`);
  }
  const ref = rows.find((r) => r.label === "llama.cpp Q4_K_M")!.wall;
  const rtn = rows.find((r) => r.label === "RTN 4-bit g64")!.wall;
  const header = ["method", "wall s", "× RTN", "× Q4_K_M", "inside", "others' CPU (cores)"];
  const out = rows.map((r) => [r.label, r.wall.toFixed(1), (r.wall / rtn).toFixed(2), (r.wall / ref).toFixed(2), r.inner, r.others.toFixed(2)]);
  console.log(`\n${table(header, out)}\n`);
  console.log(markdownTable(header, out));
}

/** Seconds per step of an `slm … --json` run (convert, imatrix, the recipe, llama-quantize). */
function phases(stdout: string): string {
  const events = stdout.trim().split("\n").map((l) => JSON.parse(l) as { type: string; ts: number; id?: string; status?: string });
  const starts = new Map<string, number>();
  const parts: string[] = [];
  for (const e of events) {
    if (e.type !== "step" || !e.id) continue;
    if (e.status === "start") starts.set(e.id, e.ts);
    else if (e.status === "done" && starts.has(e.id)) {
      const s = (e.ts - starts.get(e.id)!) / 1000;
      if (s >= 0.5) parts.push(`${e.id} ${s.toFixed(1)} s`);
    }
  }
  return parts.join(", ");
}

async function main(): Promise<void> {
  printMachine();
  const [quantizeTool] = await findTools(["llama-quantize"]);
  if (!quantizeTool?.path) throw new Error("llama-quantize not found: run `slm setup llama.cpp` first (or set SLM_LLAMA_CPP_DIR).");
  const work = mkdtempSync(path.join(tmpdir(), "slm-bench-qmethods-"));
  const home = path.join(work, "home");
  mkdirSync(home);
  const env: NodeJS.ProcessEnv = { ...process.env, SLM_HOME: home, SLM_LLAMA_CPP_DIR: path.dirname(quantizeTool.path), SLM_PYTHON: python, SLM_THREADS: String(threads), OMP_NUM_THREADS: String(threads), CI: "1", NO_COLOR: "1" };
  console.log(`python ${python}; ${threads} threads; calibration ${path.relative(ROOT, CALIBRATION)}: quality ${samples} × ${FIXTURE_CTX} tokens, time ${timeSamples} × ${seqLen}`);
  try {
    if (doQuality) quality(work, env);
    if (doTime) timing(work, env);
  } finally {
    if (!process.argv.includes("--keep")) rmSync(work, { recursive: true, force: true });
    else console.log(`kept ${work}`);
  }
}

runBench(main);
