/**
 * Throughput of `slm serve` on tiny-arith with 1, 2 and 4 concurrent clients, against the same
 * generations run in-process through node-llama-cpp (generateOn on the same model, settings and number
 * of sequences, no HTTP): the ratio is what the server costs.
 *
 *   npx tsx bench/serve.ts [--parallel 1,4] [--threads 1] [--requests 200] [--long 16] [--long-tokens 128]
 *                          [--clients 1,2,4] [--url URL] [--slm-bin PATH] [--markdown]
 *                          [--logprobs TOP] [--model REF] [--workloads sum,long]
 *
 * Two workloads, both chat completions at temperature 0, not streamed:
 *   sum   "12+34"-style questions (random two-digit sums, answers checked): 3 generated tokens each, so
 *         this measures the per-request cost (HTTP, JSON, template, prompt evaluation);
 *   long  the same questions held open by a JSON-schema grammar ({"type":"string"}) for exactly
 *         --long-tokens tokens: this measures generation throughput.
 * Each client sends its requests one after another over a keep-alive connection (fetch); the clients
 * run in this process. For every --parallel value the bench starts `slm serve tiny-arith --port 0
 * --parallel P --threads T` (unless --url: then that server, and no in-process baseline). Threads default
 * to 1: on a 2-core machine the clients need the other core. Others' CPU s is what other processes used
 * during the run (from /proc): above ~1 s the figures are disturbed.
 *
 * --logprobs TOP: each workload is also run with `logprobs: true, top_logprobs: TOP` on the same server
 * (rows "sum+lp", "long+lp", right after the plain ones), and a last table gives the cost: with / without.
 * --model: serve another model (a name or a GGUF path) instead of tiny-arith; "sum" answers are then not
 * checked (correct counts finish reasons only).
 */
import path from "node:path";
import { performance } from "node:perf_hooks";
import { execa } from "execa";
import { BIN, fmt, machineCpuSeconds, markdownTable, percentile, printMachine, processCpuSeconds, table } from "./lib.js";
import { loadModel } from "../src/backends/llama/loader.js";
import { generateOn } from "../src/backends/llama/generate.js";
import { resolveModel } from "../src/backends/store/resolve.js";

const argv = process.argv.slice(2);
function flag(name: string, def: string): string {
  const i = argv.indexOf(name);
  return i < 0 ? def : (argv[i + 1] ?? def);
}
const list = (s: string) => s.split(",").map(Number);
const parallels = list(flag("--parallel", "1,4"));
const clientCounts = list(flag("--clients", "1,2,4"));
const threads = Number(flag("--threads", "1"));
const sumRequests = Number(flag("--requests", "200"));
const longRequests = Number(flag("--long", "16"));
const longTokens = Number(flag("--long-tokens", "128"));
const externalUrl = flag("--url", "");
const slmBin = path.resolve(flag("--slm-bin", BIN));
const markdown = argv.includes("--markdown");
const topLogprobs = flag("--logprobs", "");
const modelRef = flag("--model", "tiny-arith");
const workloads = flag("--workloads", "sum,long").split(",") as Workload[];
if ([...parallels, ...clientCounts, threads, sumRequests, longRequests, longTokens].some((n) => !(n >= 1) || !Number.isInteger(n)) || (topLogprobs !== "" && !(Number(topLogprobs) >= 0 && Number(topLogprobs) <= 20))) {
  console.error("usage: npx tsx bench/serve.ts [--parallel 1,4] [--threads 1] [--requests 200] [--long 16] [--long-tokens 128] [--clients 1,2,4] [--url URL] [--slm-bin PATH] [--markdown] [--logprobs TOP] [--model REF] [--workloads sum,long]");
  process.exit(2);
}

type Workload = "sum" | "long";
/** A workload, with logprobs or not. */
type Run = { workload: Workload; logprobs: boolean };

interface Job {
  q: string;
  answer: string;
}

/** The same pseudo-random questions for every run, so that server and in-process work alike. */
function jobs(n: number, seed: number): Job[] {
  let x = seed;
  const next = () => ((x = (x * 1103515245 + 12345) % 2 ** 31), x);
  return Array.from({ length: n }, () => {
    const a = 10 + (next() % 90);
    const b = 10 + (next() % 90);
    return { q: `${a}+${b}`, answer: String(a + b) };
  });
}

const LONG_FORMAT = { type: "json_schema", json_schema: { name: "s", schema: { type: "string" } } };

interface Outcome {
  ok: boolean;
  tokens: number;
  ms: number;
}

interface Measured {
  wallS: number;
  requests: number;
  tokens: number;
  correct: number;
  p50: number;
  p90: number;
  othersCpuS: number;
}

/** Runs `all` jobs spread over `clients` loops; each loop waits for its answer before asking again. */
async function measure(clients: number, all: Job[], one: (job: Job, client: number) => Promise<Outcome>, ownCpu: () => number): Promise<Measured> {
  const queue = [...all];
  const outcomes: Outcome[] = [];
  const cpu0 = machineCpuSeconds().busy;
  const own0 = ownCpu();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      for (let job = queue.shift(); job; job = queue.shift()) outcomes.push(await one(job, c));
    }),
  );
  const wallS = (performance.now() - t0) / 1000;
  const othersCpuS = Math.max(0, machineCpuSeconds().busy - cpu0 - (ownCpu() - own0));
  const ms = outcomes.map((o) => o.ms);
  return { wallS, requests: outcomes.length, tokens: outcomes.reduce((s, o) => s + o.tokens, 0), correct: outcomes.filter((o) => o.ok).length, p50: percentile(ms, 50), p90: percentile(ms, 90), othersCpuS };
}

const selfCpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

function viaHttp(url: string, workload: Workload, logprobs = false) {
  return async (job: Job): Promise<Outcome> => {
    const t = performance.now();
    const body = {
      model: served,
      messages: [{ role: "user", content: job.q }],
      temperature: 0,
      ...(workload === "long" ? { max_tokens: longTokens, response_format: LONG_FORMAT } : {}),
      ...(logprobs ? { logprobs: true, top_logprobs: Number(topLogprobs) } : {}),
    };
    const r = await fetch(`${url}/v1/chat/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const json = (await r.json()) as { choices?: { message: { content: string }; finish_reason: string }[]; usage?: { completion_tokens: number } };
    const ms = performance.now() - t;
    const c = json.choices?.[0];
    const ok = r.status === 200 && !!c && (workload === "sum" ? modelRef !== "tiny-arith" || c.message.content === job.answer : c.finish_reason === "length");
    return { ok, tokens: json.usage?.completion_tokens ?? 0, ms };
  };
}

async function startServer(parallel: number): Promise<{ url: string; pid: number; stop: () => Promise<void> }> {
  const proc = execa("node", [slmBin, "serve", modelRef, "--port", "0", "--parallel", String(parallel), "--threads", String(threads), "--idle-timeout", "0"], { reject: false, env: { CI: "1", NO_COLOR: "1" } });
  let err = "";
  const url = await new Promise<string>((resolve, reject) => {
    proc.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
      const m = /listening on (http:\/\/[^\s(]+)/.exec(err);
      if (m) resolve(m[1]!);
    });
    void proc.then(() => reject(new Error(`slm serve exited:\n${err}`)));
  });
  // A model given by path is served under its file name; /v1/models says which.
  served = ((await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] }).data[0]!.id;
  return {
    url,
    pid: proc.pid!,
    stop: async () => {
      proc.kill("SIGINT");
      const r = await proc;
      if (r.exitCode !== 0) console.error(`warning: slm serve exited with ${r.exitCode}`);
    },
  };
}

const header = ["workload", "--parallel", "clients", "requests", "req/s", "gen tok/s", "p50 ms", "p90 ms", "correct", "in-process req/s", "in-process tok/s", "server / in-process", "others' CPU s"];
const rows: string[][] = [];
let served = modelRef;

async function main(): Promise<void> {
  printMachine();
  console.log(`slm serve: ${modelRef}, --threads ${threads}; sum: ${sumRequests} requests; long: ${longRequests} × ${longTokens} tokens${topLogprobs ? `; +lp: logprobs with top_logprobs ${topLogprobs}` : ""}\n`);
  const configs = externalUrl ? [0] : parallels;
  for (const parallel of configs) {
    const server = externalUrl ? { url: externalUrl, pid: 0, stop: async () => undefined } : await startServer(parallel);
    const serverCpu = () => (server.pid ? processCpuSeconds(server.pid) : 0) + selfCpu();
    // In-process: the same model, context settings and number of sequences as the server.
    const loaded = externalUrl ? undefined : await loadModel(resolveModel(modelRef), { sequences: parallel, threads, gpu: "auto" });
    // The server resolves the chat template when it loads a model; so does the baseline, before timing.
    await loaded?.chatWrapper();
    const sequences = loaded ? Array.from({ length: parallel }, () => loaded.context.getSequence()) : [];
    try {
      const runs: Run[] = workloads.flatMap((workload) => [{ workload, logprobs: false }, ...(topLogprobs ? [{ workload, logprobs: true }] : [])]);
      for (const { workload, logprobs } of runs) {
        const n = workload === "sum" ? sumRequests : longRequests;
        // Warm-up: template, grammar and first-request paths, untimed.
        await measure(Math.max(...clientCounts), jobs(Math.max(...clientCounts), 7), viaHttp(server.url, workload, logprobs), serverCpu);
        for (const clients of clientCounts) {
          const work = jobs(n, 42 + clients);
          const http = await measure(clients, work, viaHttp(server.url, workload, logprobs), serverCpu);
          let local: Measured | undefined;
          // The in-process peer is measured for the plain rows; +lp rows compare with those.
          if (loaded && !logprobs) {
            // More clients than sequences wait for one, as requests queue in the server.
            const free = [...sequences];
            const waiting: ((s: (typeof sequences)[number]) => void)[] = [];
            const take = async () => free.pop() ?? new Promise<(typeof sequences)[number]>((r) => waiting.push(r));
            const give = (s: (typeof sequences)[number]) => {
              const w = waiting.shift();
              if (w) w(s);
              else free.push(s);
            };
            local = await measure(
              clients,
              work,
              async (job) => {
                const seq = await take();
                const t = performance.now();
                try {
                  const r = await generateOn(loaded, seq, { prompt: job.q, history: [], temperature: 0, ...(workload === "long" ? { maxTokens: longTokens, jsonSchema: { type: "string" } } : { maxTokens: 200 }) });
                  return { ok: workload === "sum" ? modelRef !== "tiny-arith" || r.text === job.answer : r.stopReason === "maxTokens", tokens: r.completionTokens, ms: performance.now() - t };
                } finally {
                  give(seq);
                }
              },
              selfCpu,
            );
          }
          const rps = http.requests / http.wallS;
          const localRps = local ? local.requests / local.wallS : NaN;
          rows.push([
            logprobs ? `${workload}+lp` : workload,
            externalUrl ? "?" : String(parallel),
            String(clients),
            String(http.requests),
            fmt(rps, 1),
            fmt(http.tokens / http.wallS, 0),
            fmt(http.p50, 1),
            fmt(http.p90, 1),
            `${http.correct}/${http.requests}`,
            local ? fmt(localRps, 1) : "",
            local ? fmt(local.tokens / local.wallS, 0) : "",
            local ? `${fmt(rps / localRps, 2)}×` : "",
            fmt(Math.max(http.othersCpuS, local?.othersCpuS ?? 0), 1),
          ]);
          console.log(table(header, rows.slice(-1)).split("\n")[2]);
        }
      }
    } finally {
      await loaded?.dispose();
      await server.stop();
    }
  }
  console.log(`\n${table(header, rows)}`);
  if (markdown) console.log(`\n${markdownTable(header, rows)}`);
  if (topLogprobs) {
    // Each +lp row against the plain row of the same workload, --parallel and clients.
    const cost = rows
      .filter((r) => r[0]!.endsWith("+lp"))
      .map((lp) => {
        const plain = rows.find((r) => r[0] === lp[0]!.replace("+lp", "") && r[1] === lp[1] && r[2] === lp[2])!;
        return [plain[0]!, lp[1]!, lp[2]!, plain[4]!, lp[4]!, `${fmt(Number(lp[4]) / Number(plain[4]), 2)}×`, plain[5]!, lp[5]!, `${fmt(Number(lp[5]) / Number(plain[5]), 2)}×`];
      });
    const costHeader = ["workload", "--parallel", "clients", "req/s", "req/s +lp", "ratio", "gen tok/s", "gen tok/s +lp", "ratio"];
    console.log(`\nlogprobs cost (top_logprobs ${topLogprobs}):\n${table(costHeader, cost)}`);
    if (markdown) console.log(`\n${markdownTable(costHeader, cost)}`);
  }
}

await main();
