/**
 * `slm eval` questions per second against the naive loop the eval issue describes, same model, same
 * questions, same thread count, in one run.
 *
 *   npx tsx bench/eval.ts [--rounds 3] [--threads 1] [--limit 500] [--parallel 8] [--task FILE]
 *                         [--model REF | --shape smollm2-135m|qwen2.5-0.5b]
 *
 * The default model is the fixture tiny-arith (3.3M parameters, all in cache: decoding costs the same
 * per token whether one sequence or eight, so batching saves round trips, not matrix work). --shape
 * writes a random-weight model of a real model's shape (bench/ggufWriter.ts, no chat template: the
 * generic wrapper) into a temp folder, where one decode reads every weight from memory and batching
 * sequences pays; its answers are noise (accuracy 0, every answer --max-tokens long), the speed is real.
 *
 * Sides, each in a fresh process with UV_THREADPOOL_SIZE=1 (what bin/slm.js sets for inference verbs),
 * the order rotated every round:
 * - naive: load the model once, then per question a new LlamaChatSession on a new sequence (the chat
 *   wrapper resolved by node-llama-cpp for each session), greedy, at most 8 tokens;
 * - sequential: the same loop with slm's `generate()`, which reuses the chat wrapper (what `slm run`
 *   does per prompt): how much of the naive cost is per-session set-up;
 * both start from an empty chat history, as slm eval renders a task's messages and nothing else
 * (a session's default is node-llama-cpp's stock system prompt, hundreds of tokens with some templates);
 * - slm eval: `node bin/slm.js eval MODEL --task FILE --limit N --threads T --parallel P --no-store
 *   --json`; its questions/s is the task's own time (the model loaded), and the wall time is printed too.
 * Every side reports its exact-match accuracy, so a fast wrong answer would show.
 * Other processes' CPU use while each side ran is printed (from /proc/stat); check `uptime` first.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { SHAPES, writeLlamaGguf } from "./ggufWriter.js";
import { BIN, ROOT, arg, markdownTable, median, printMachine, runBench, runMeasured, table } from "./lib.js";

const rounds = Number(arg("--rounds", "3"));
const threads = Number(arg("--threads", "1"));
const limit = Number(arg("--limit", "500"));
const parallel = Number(arg("--parallel", "8"));
const task = path.resolve(arg("--task", path.join(ROOT, "test", "fixtures", "tiny-arith", "data", "add-eval.jsonl")));
const shape = arg("--shape", "");
let model = arg("--model", "tiny-arith");
const MAX_TOKENS = 8;

interface Side {
  side: "naive" | "sequential" | "slm eval";
  questions: number;
  correct: number;
  /** Seconds spent answering (model loaded). */
  seconds: number;
  /** Process start to exit. */
  wall: number;
  others: number;
  load: number;
}

function questions(): { q: string; a: string }[] {
  return readFileSync(task, "utf8")
    .trim()
    .split("\n")
    .slice(0, limit)
    .map((l) => JSON.parse(l) as { messages: { role: string; content: string }[] })
    .map((o) => ({ q: o.messages.find((m) => m.role === "user")!.content, a: o.messages.find((m) => m.role === "assistant")!.content }));
}

/** Runs in the child: one of the two in-process loops, printing one JSON line. */
async function child(kind: "naive" | "sequential"): Promise<void> {
  const [{ resolveModel }, { loadModel }, { generate }, { LlamaChatSession }] = await Promise.all([
    import("../src/backends/store/resolve.js"),
    import("../src/backends/llama/loader.js"),
    import("../src/backends/llama/generate.js"),
    import("node-llama-cpp"),
  ]);
  const items = questions();
  const loaded = await loadModel(resolveModel(model), { threads });
  let correct = 0;
  const t0 = performance.now();
  for (const it of items) {
    let text: string;
    if (kind === "naive") {
      const sequence = loaded.context.getSequence();
      const session = new LlamaChatSession({ contextSequence: sequence, autoDisposeSequence: true });
      session.setChatHistory([]);
      text = await session.prompt(it.q, { temperature: 0, maxTokens: MAX_TOKENS });
      session.dispose();
    } else {
      text = (await generate(loaded, { prompt: it.q, history: [], temperature: 0, maxTokens: MAX_TOKENS })).text;
    }
    if (text.trim() === it.a) correct++;
  }
  const seconds = (performance.now() - t0) / 1000;
  await loaded.dispose();
  console.log(JSON.stringify({ questions: items.length, correct, seconds }));
}

function measure(side: Side["side"]): Side {
  const env = { ...process.env, UV_THREADPOOL_SIZE: "1", SLM_THREADS: String(threads) };
  const args =
    side === "slm eval"
      ? [BIN, "eval", model, "--task", task, "--limit", String(limit), "--threads", String(threads), "--parallel", String(parallel), "-n", String(MAX_TOKENS), "--no-store", "--json"]
      : ["--import", "tsx", path.join(ROOT, "bench", "eval.ts"), "--child", side, "--threads", String(threads), "--limit", String(limit), "--task", task, "--model", model];
  const r = runMeasured(process.execPath, args, env);
  const { wall, others, load } = r;
  const last = JSON.parse(r.stdout.trim().split("\n").pop()!) as { questions: number; correct: number; seconds: number } | { data: { models: { tasks: { score: { questions: number; seconds: number; accuracy: { value: number } } }[] }[] } };
  if ("data" in last) {
    const s = last.data.models[0]!.tasks[0]!.score;
    return { side, questions: s.questions, correct: Math.round(s.accuracy.value * s.questions), seconds: s.seconds, wall, others, load };
  }
  return { side, ...last, wall, others, load };
}

async function main(): Promise<void> {
  const childKind = arg("--child", "");
  if (childKind === "naive" || childKind === "sequential") return child(childKind);
  printMachine();
  let work: string | undefined;
  if (shape) {
    const s = SHAPES[shape];
    if (!s) throw new Error(`--shape takes ${Object.keys(SHAPES).join(" or ")}`);
    work = mkdtempSync(path.join(tmpdir(), "slm-bench-eval-"));
    model = path.join(work, `${shape}-random-f16.gguf`);
    const { parameters } = writeLlamaGguf(model, s);
    console.log(`wrote ${s.name}: ${(parameters / 1e6).toFixed(1)}M parameters, F16`);
  }
  try {
    await runRounds();
  } finally {
    if (work) rmSync(work, { recursive: true, force: true });
  }
}

async function runRounds(): Promise<void> {
  console.log(`model ${model}; task ${task}, first ${limit}; threads ${threads}; --parallel ${parallel}; at most ${MAX_TOKENS} tokens; ${rounds} rounds`);
  const sides: Side["side"][] = ["naive", "sequential", "slm eval"];
  const all: Side[] = [];
  for (let round = 0; round < rounds; round++) {
    for (const s of sides.map((_, i) => sides[(i + round) % sides.length]!)) {
      const m = measure(s);
      all.push(m);
      console.log(`  round ${round + 1} ${s.padEnd(10)} ${(m.questions / m.seconds).toFixed(1)} questions/s (${m.seconds.toFixed(2)} s answering, ${m.wall.toFixed(2)} s wall), ${m.correct}/${m.questions} right (load ${m.load.toFixed(2)}, others ${m.others.toFixed(2)} cores)`);
    }
  }
  const qps = (s: Side["side"]) => all.filter((m) => m.side === s).map((m) => m.questions / m.seconds);
  const naive = median(qps("naive"));
  const header = ["side", "questions/s (rounds)", "median", "ms per question", "vs naive", "right", "wall s (median)", "others' cores (max)"];
  const rows = sides.map((s) => {
    const mine = all.filter((m) => m.side === s);
    const q = qps(s);
    return [s, q.map((v) => v.toFixed(1)).join(" / "), median(q).toFixed(1), (1000 / median(q)).toFixed(1), `${(median(q) / naive).toFixed(1)}×`, `${mine[0]!.correct}/${mine[0]!.questions}`, median(mine.map((m) => m.wall)).toFixed(2), Math.max(...mine.map((m) => m.others)).toFixed(2)];
  });
  console.log(`\n${table(header, rows)}\n\n${markdownTable(header, rows)}`);
}

runBench(main);
