/**
 * What logprobs cost generation, in-process (no HTTP): the same generations on one sequence with and
 * without `logprobs`, alternating, counted per CPU-second of this process as well as per wall second —
 * on a shared machine the CPU figure moves much less with the neighbours than the wall one.
 *
 *   npx tsx bench/logprobsCost.ts [MODEL] [--tokens 128] [--answers 6] [--rounds 5] [--top 5] [--threads 1] [--noop-reader]
 *
 * Each answer is a two-digit sum held open by a {"type":"string"} grammar for exactly --tokens tokens
 * (bench/serve.ts's "long" workload). --noop-reader replaces the row reader (rows.ts) with one that reads
 * nothing: what is left is the cost of the sampling tap and of picking out the answer's tokens, i.e. the
 * part that does not depend on how fast rows are read. The first round warms up and is not counted in
 * the median.
 */
import { generateOn } from "../src/backends/llama/generate.js";
import { loadModel } from "../src/backends/llama/loader.js";
import { type LogitRows, logitRowsFor, prepareLogitRows } from "../src/backends/llama/rows.js";
import { resolveModel } from "../src/backends/store/resolve.js";
import { fmt, median, printMachine, table } from "./lib.js";

const argv = process.argv.slice(2);
const flag = (name: string, def: string) => {
  const i = argv.indexOf(name);
  return i < 0 ? def : (argv[i + 1] ?? def);
};
const model = argv[0] && !argv[0].startsWith("--") ? argv[0] : "tiny-arith";
const tokens = Number(flag("--tokens", "128"));
const answers = Number(flag("--answers", "6"));
const rounds = Number(flag("--rounds", "5"));
const top = Number(flag("--top", "5"));
const threads = Number(flag("--threads", "1"));
const noop = argv.includes("--noop-reader");

printMachine();
const loaded = await loadModel(resolveModel(model), { threads, sequences: 1 });
await loaded.chatWrapper();
const sequence = loaded.context.getSequence();
// The reader serve uses: slm's addon when it builds and passes its probe (SLM_NATIVE_LOGITS=0: the slow exact path).
await prepareLogitRows(loaded);
const real = logitRowsFor(loaded);
const rows: LogitRows = noop ? { native: false, read: async () => ({ logprob: 0, top: [] }), dispose: () => undefined } : real;
console.log(`${model}, ${threads} thread(s), ${answers} answers × ${tokens} tokens per measure, top_logprobs ${top}, reader: ${noop ? "none (no-op)" : real.native ? "native" : "slow exact (sampler)"}\n`);

async function measure(logprobs: boolean): Promise<{ wall: number; cpu: number }> {
  const t = performance.now();
  const c0 = process.cpuUsage();
  let n = 0;
  for (let i = 0; i < answers; i++) {
    const r = await generateOn(loaded, sequence, { prompt: `${10 + i}+${20 + i}`, history: [], temperature: 0, maxTokens: tokens, jsonSchema: { type: "string" }, ...(logprobs ? { logprobs: { rows, top } } : {}) });
    n += r.completionTokens;
  }
  const c = process.cpuUsage(c0);
  return { wall: (n * 1000) / (performance.now() - t), cpu: n / ((c.user + c.system) / 1e6) };
}

const rowsOut: string[][] = [];
const ratios: { wall: number; cpu: number }[] = [];
for (let k = 0; k < rounds; k++) {
  const plain = await measure(false);
  const lp = await measure(true);
  if (k > 0) ratios.push({ wall: lp.wall / plain.wall, cpu: lp.cpu / plain.cpu });
  rowsOut.push([k === 0 ? "warm-up" : String(k), fmt(plain.wall), fmt(lp.wall), `${fmt(lp.wall / plain.wall, 2)}×`, fmt(plain.cpu), fmt(lp.cpu), `${fmt(lp.cpu / plain.cpu, 2)}×`]);
}
console.log(table(["round", "tok/s", "tok/s +lp", "ratio", "tok/CPU-s", "tok/CPU-s +lp", "ratio"], rowsOut));
console.log(`\nmedian ratio: ${fmt(median(ratios.map((r) => r.wall)), 2)}× wall, ${fmt(median(ratios.map((r) => r.cpu)), 2)}× per CPU-second`);
real.dispose();
sequence.dispose();
await loaded.dispose();
