/**
 * KL divergence and multiple choice with slm's log-probability addon and without it (SLM_NATIVE_LOGITS=0,
 * the exact sampler path), and KLD against llama-perplexity's, on the SmolLM2-135M-shaped model.
 *
 *   npx tsx bench/logprobs.ts [--rounds 2] [--ctx 512] [--chunks 2] [--threads 1] [--questions 40] [--pair F16:Q8_0] [--keep DIR]
 *
 * The model and the text are bench/perplexity.ts's (F16, random weights, vocabulary 49,152; a synthetic
 * text of one token per character), reused from DIR when present; the KLD pair is `--pair BASE:MODEL`,
 * types of that model (F16 or what llama-quantize makes of it; default F16:Q8_0). Per round, order alternating:
 *
 * - KLD: `slm eval MODEL --perplexity TEXT --kld-base BASE --ctx C --threads T --json`, with and without
 *   the addon; llama-perplexity's two steps, `-m BASE --kl-divergence-base FILE` (saves the base's
 *   log-probabilities) then `-m MODEL --kl-divergence-base FILE --kl-divergence`, their walls summed.
 *   tokens/s = chunks × ctx / wall of the whole process(es).
 * - Multiple choice: `slm eval F16 --task CHOICE.jsonl --threads T --json` with and without the addon;
 *   questions/s as slm reports it (scoring only, not loading). The questions are random strings of the
 *   synthetic vocabulary with 4 choices of 8–24 characters: only speed is measured.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { findTools } from "../src/backends/llamacpp/tools.js";
import { SMOLLM2_135M, writeLlamaGguf } from "./ggufWriter.js";
import { BIN, arg, markdownTable, median, printMachine, runBench, runMeasured, table } from "./lib.js";

const rounds = Number(arg("--rounds", "2"));
const ctxSize = Number(arg("--ctx", "512"));
const chunks = Number(arg("--chunks", "2"));
const threads = Number(arg("--threads", "1"));
const questions = Number(arg("--questions", "40"));
const [baseType, modelType] = arg("--pair", "F16:Q8_0").split(":") as [string, string];
const keep = process.argv.includes("--keep") ? path.resolve(arg("--keep", "")) : undefined;

function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state >>> 16;
  };
}

function letters(next: () => number, n: number): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  return Array.from({ length: n }, () => alphabet[next() % alphabet.length]).join("");
}

function slmResult(stdout: string): unknown {
  const line = stdout.split("\n").filter((l) => l.includes('"result"')).pop();
  if (!line) throw new Error(`no result in slm's output:\n${stdout.slice(-2000)}`);
  return (JSON.parse(line) as { data: unknown }).data;
}

type Side = "slm (addon)" | "slm (no addon)" | "llama-perplexity";

async function main(): Promise<void> {
  printMachine();
  const [ppl, quantize] = await findTools(["llama-perplexity", "llama-quantize"]);
  if (!ppl?.path || !quantize?.path) throw new Error("llama-perplexity or llama-quantize not found: run `slm setup llama.cpp` first (or set SLM_LLAMA_CPP_DIR).");
  const work = keep ?? mkdtempSync(path.join(tmpdir(), "slm-bench-logprobs-"));
  mkdirSync(work, { recursive: true });
  try {
    const f16 = path.join(work, "smollm2-135m-shaped-f16.gguf");
    if (!existsSync(f16)) writeLlamaGguf(f16, SMOLLM2_135M);
    const ofType = (type: string) => {
      const file = type === "F16" ? f16 : path.join(work, `smollm2-135m-shaped-${type.toLowerCase()}.gguf`);
      if (!existsSync(file)) runMeasured(quantize.path!, [f16, file, type]);
      return file;
    };
    const [kldBase, kldModel] = [ofType(baseType), ofType(modelType)];
    const next = random(12345);
    const text = path.join(work, `logprobs-text-${chunks * ctxSize}.txt`);
    if (!existsSync(text)) writeFileSync(text, `${Array.from({ length: Math.ceil((chunks * ctxSize) / 64) + 1 }, () => letters(next, 64)).join("\n")}\n`);
    const task = path.join(work, `choice-${questions}.jsonl`);
    if (!existsSync(task)) {
      const lines = Array.from({ length: questions }, () => JSON.stringify({ question: letters(next, 40), choices: Array.from({ length: 4 }, () => letters(next, 8 + (next() % 17))), answer: next() % 4 }));
      writeFileSync(task, `${lines.join("\n")}\n`);
    }
    console.log(`llama-perplexity: ${ppl.path}; ctx ${ctxSize}; ${chunks} chunks; ${questions} questions; threads ${threads}; ${rounds} rounds`);
    const common = ["--threads", String(threads), "--json"];
    const env = (addon: boolean) => ({ ...process.env, SLM_NATIVE_LOGITS: addon ? "1" : "0" });

    const kld: Record<Side, { tps: number; kld: number; others: number }[]> = { "slm (addon)": [], "slm (no addon)": [], "llama-perplexity": [] };
    const choice: Record<string, number[]> = { "slm (addon)": [], "slm (no addon)": [] };
    for (let round = 0; round < rounds; round++) {
      const slmKld = (addon: boolean) => () => {
        const r = runMeasured(process.execPath, [BIN, "eval", kldModel, "--perplexity", text, "--ctx", String(ctxSize), "--kld-base", kldBase, ...common], env(addon));
        const k = (slmResult(r.stdout) as { models: { kld: { mean: number; chunks: number } }[] }).models[0]!.kld;
        kld[addon ? "slm (addon)" : "slm (no addon)"].push({ tps: (k.chunks * ctxSize) / r.wall, kld: k.mean, others: r.others });
      };
      const llamaKld = () => {
        const base = path.join(work, "base.kld");
        const a = runMeasured(ppl.path!, ["-m", kldBase, "-f", text, "-c", String(ctxSize), "-t", String(threads), "--kl-divergence-base", base]);
        const b = runMeasured(ppl.path!, ["-m", kldModel, "-c", String(ctxSize), "-t", String(threads), "--kl-divergence-base", base, "--kl-divergence"]);
        const out = `${b.stdout}\n${b.stderr}`;
        const mean = /Mean\s+KLD:\s+([-\d.]+)/.exec(out);
        const n = /calculating perplexity over (\d+) chunks/.exec(`${a.stdout}\n${a.stderr}`);
        kld["llama-perplexity"].push({ tps: ((n ? Number(n[1]) : chunks) * ctxSize) / (a.wall + b.wall), kld: mean ? Number(mean[1]) : Number.NaN, others: Math.max(a.others, b.others) });
      };
      const slmChoice = (addon: boolean) => () => {
        const r = runMeasured(process.execPath, [BIN, "eval", f16, "--task", task, "--no-store", ...common], env(addon));
        const s = (slmResult(r.stdout) as { models: { tasks: { score: { questionsPerSecond: number } }[] }[] }).models[0]!.tasks[0]!.score;
        choice[addon ? "slm (addon)" : "slm (no addon)"]!.push(s.questionsPerSecond);
      };
      const steps = [slmKld(true), slmKld(false), llamaKld, slmChoice(true), slmChoice(false)];
      for (const s of round % 2 === 0 ? steps : [...steps].reverse()) s();
      console.log(`  round ${round + 1} done`);
    }
    const header = ["measure", "slm with addon", "slm without addon (exact sampler path)", "llama-perplexity", "addon / without", "addon / llama-perplexity", "others' cores (max)"];
    const m = (xs: { tps: number }[]) => median(xs.map((x) => x.tps));
    const rows = [
      [
        `KLD ${modelType} from ${baseType}, tokens/s (rounds; KLD ${kld["slm (addon)"][0]!.kld.toFixed(6)} / ${kld["slm (no addon)"][0]!.kld.toFixed(6)} / ${kld["llama-perplexity"][0]!.kld.toFixed(6)})`,
        kld["slm (addon)"].map((x) => x.tps.toFixed(1)).join(" / "),
        kld["slm (no addon)"].map((x) => x.tps.toFixed(1)).join(" / "),
        kld["llama-perplexity"].map((x) => x.tps.toFixed(1)).join(" / "),
        `${(m(kld["slm (addon)"]) / m(kld["slm (no addon)"])).toFixed(2)}×`,
        `${(m(kld["slm (addon)"]) / m(kld["llama-perplexity"])).toFixed(2)}×`,
        Math.max(...Object.values(kld).flat().map((x) => x.others)).toFixed(2),
      ],
      [
        `multiple choice F16, questions/s (rounds)`,
        choice["slm (addon)"]!.map((x) => x.toFixed(2)).join(" / "),
        choice["slm (no addon)"]!.map((x) => x.toFixed(2)).join(" / "),
        "—",
        `${(median(choice["slm (addon)"]!) / median(choice["slm (no addon)"]!)).toFixed(2)}×`,
        "—",
        "",
      ],
    ];
    console.log(`\n${table(header, rows)}\n\n${markdownTable(header, rows)}`);
  } finally {
    if (!keep) rmSync(work, { recursive: true, force: true });
  }
}

runBench(main);
