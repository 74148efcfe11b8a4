/**
 * `slm distill`'s teacher generation (answers/s) against a naive one-prompt-at-a-time loop, same model,
 * same prompts, same thread count and answer length, in one run.
 *
 *   npx tsx bench/distillGen.ts [--rounds 2] [--threads 1] [--prompts 48] [--max-tokens 16]
 *                               [--parallel 8] [--shape smollm2-135m|qwen2.5-0.5b | --model REF]
 *
 * The default model is a random-weight model of SmolLM2-135M's shape (bench/ggufWriter.ts, written to a
 * temp folder; no chat template, so the generic wrapper): one decode reads every weight from memory,
 * which is where answering several prompts per decode pays. Its answers are noise, so every answer is
 * --max-tokens long: the speed is real. The prompts are the fixture's subtraction questions.
 *
 * Sides, each in a fresh process with UV_THREADPOOL_SIZE=1 (what bin/slm.js sets), order rotated:
 * - naive: node-llama-cpp as a script would use it: the model loaded once, then per prompt a
 *   LlamaChatSession on a new sequence (empty history: no stock system prompt, as slm renders only the
 *   prompt) and `session.prompt()`, greedy, one prompt after the other;
 * - slm distill --parallel 1: slm's generation, one prompt at a time (what batching is measured against);
 * - slm distill --parallel P: `slm distill … --data-only --json`, the prompts on P parallel sequences.
 * answers/s counts the answering only (model loaded; distill's `generation.seconds`); wall time is
 * printed too, and answers per CPU second of the whole process (start and load included), which other
 * processes on a shared machine disturb less. Their CPU use while each side ran comes from /proc/stat.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { SHAPES, writeLlamaGguf } from "./ggufWriter.js";
import { BIN, ROOT, arg, markdownTable, median, printMachine, runBench, runMeasured, table } from "./lib.js";

const rounds = Number(arg("--rounds", "2"));
const threads = Number(arg("--threads", "1"));
const count = Number(arg("--prompts", "48"));
const maxTokens = Number(arg("--max-tokens", "16"));
const parallel = Number(arg("--parallel", "8"));
const shape = arg("--shape", "smollm2-135m");
let model = arg("--model", "");
let promptsFile = arg("--prompts-file", "");

type SideName = "naive" | "slm --parallel 1" | `slm --parallel ${number}`;
interface Side {
  side: SideName;
  answers: number;
  tokens: number;
  seconds: number;
  wall: number;
  /** CPU seconds of the whole process (start and load included): steadier than wall time on a shared machine. */
  cpu: number;
  others: number;
}

/** In the child: the naive loop, printing one JSON line. */
async function naive(): Promise<void> {
  const [{ getLlama, LlamaChatSession }] = await Promise.all([import("node-llama-cpp")]);
  const prompts = readFileSync(promptsFile, "utf8").trim().split("\n");
  const llama = await getLlama({ gpu: false });
  const m = await llama.loadModel({ modelPath: model });
  const context = await m.createContext({ contextSize: 512, threads });
  let tokens = 0;
  const t0 = performance.now();
  for (const p of prompts) {
    const session = new LlamaChatSession({ contextSequence: context.getSequence(), autoDisposeSequence: true });
    // No stock system prompt: slm renders the prompt's own messages and nothing else.
    session.setChatHistory([]);
    await session.prompt(p, { temperature: 0, maxTokens, onToken: (t) => (tokens += t.length) });
    session.dispose();
  }
  const seconds = (performance.now() - t0) / 1000;
  await context.dispose();
  await m.dispose();
  console.log(JSON.stringify({ answers: prompts.length, tokens, seconds }));
}

function measure(side: SideName, home: string): Side {
  const env = { ...process.env, UV_THREADPOOL_SIZE: "1", SLM_HOME: home, SLM_THREADS: String(threads) };
  if (side === "naive") {
    const r = runMeasured(process.execPath, ["--import", "tsx", path.join(ROOT, "bench", "distillGen.ts"), "--child", "naive", "--model", model, "--prompts-file", promptsFile, "--threads", String(threads), "--max-tokens", String(maxTokens)], env);
    return { side, ...(JSON.parse(r.stdout.trim().split("\n").pop()!) as { answers: number; tokens: number; seconds: number }), wall: r.wall, cpu: r.cpu, others: r.others };
  }
  const p = side === "slm --parallel 1" ? 1 : parallel;
  // A fresh dataset name per run: an earlier run's finished dataset would be reused, not generated.
  rmSync(path.join(home, "datasets"), { recursive: true, force: true });
  const r = runMeasured(process.execPath, [BIN, "distill", "--teacher", model, "--student", "tiny-arith", "--prompts", promptsFile, "--data-only", "--parallel", String(p), "--threads", String(threads), "-n", String(maxTokens), "--json"], env);
  const g = (JSON.parse(r.stdout.trim().split("\n").pop()!) as { data: { generation: { answered: number; generatedTokens: number; seconds: number } } }).data.generation;
  return { side, answers: g.answered, tokens: g.generatedTokens, seconds: g.seconds, wall: r.wall, cpu: r.cpu, others: r.others };
}

async function main(): Promise<void> {
  if (arg("--child", "") === "naive") return naive();
  printMachine();
  const work = mkdtempSync(path.join(tmpdir(), "slm-bench-distill-"));
  try {
    if (!model) {
      const s = SHAPES[shape];
      if (!s) throw new Error(`--shape takes ${Object.keys(SHAPES).join(" or ")}`);
      model = path.join(work, `${shape}-random-f16.gguf`);
      const { parameters } = writeLlamaGguf(model, s);
      console.log(`wrote ${s.name}: ${(parameters / 1e6).toFixed(1)}M parameters, F16`);
    }
    const questions = readFileSync(path.join(ROOT, "test", "fixtures", "tiny-arith", "data", "sub-train.jsonl"), "utf8").trim().split("\n").slice(0, count);
    promptsFile = path.join(work, "prompts.txt");
    writeFileSync(promptsFile, questions.map((l) => (JSON.parse(l) as { messages: { content: string }[] }).messages[0]!.content).join("\n") + "\n");
    runRounds(path.join(work, "home"));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function runRounds(home: string): void {
  console.log(`model ${model}; ${count} prompts; threads ${threads}; at most ${maxTokens} tokens; --parallel ${parallel}; ${rounds} rounds`);
  const sides: SideName[] = ["naive", "slm --parallel 1", `slm --parallel ${parallel}`];
  const all: Side[] = [];
  for (let round = 0; round < rounds; round++) {
    for (const s of sides.map((_, i) => sides[(i + round) % sides.length]!)) {
      const m = measure(s, home);
      all.push(m);
      console.log(`  round ${round + 1} ${s.padEnd(18)} ${(m.answers / m.seconds).toFixed(2)} answers/s, ${(m.tokens / m.seconds).toFixed(1)} tokens/s (${m.seconds.toFixed(2)} s answering, ${m.wall.toFixed(2)} s wall, ${m.cpu.toFixed(2)} CPU s; others ${m.others.toFixed(2)} cores)`);
    }
  }
  const aps = (s: SideName) => all.filter((m) => m.side === s).map((m) => m.answers / m.seconds);
  const base = median(aps("naive"));
  const perCpu = (s: SideName) => median(all.filter((m) => m.side === s).map((m) => m.answers / m.cpu));
  const header = ["side", "answers/s (rounds)", "median", "vs naive", "tokens/s (median)", "answers per CPU s", "vs naive (CPU)", "wall s (median)", "others' cores (max)"];
  const rows = sides.map((s) => {
    const mine = all.filter((m) => m.side === s);
    const a = aps(s);
    return [s, a.map((v) => v.toFixed(2)).join(" / "), median(a).toFixed(2), `${(median(a) / base).toFixed(2)}×`, median(mine.map((m) => m.tokens / m.seconds)).toFixed(1), perCpu(s).toFixed(2), `${(perCpu(s) / perCpu("naive")).toFixed(2)}×`, median(mine.map((m) => m.wall)).toFixed(2), Math.max(...mine.map((m) => m.others)).toFixed(2)];
  });
  console.log(`\n${table(header, rows)}\n\n${markdownTable(header, rows)}`);
  console.log(`\nslm distill --parallel ${parallel} / naive: ${(median(aps(`slm --parallel ${parallel}`)) / base).toFixed(2)}×`);
}

runBench(main);
