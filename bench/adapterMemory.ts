/**
 * Resident memory of `slm serve` serving N fine-tunes of one base, on the SmolLM2-135M shape (random F16
 * weights, random rank-R LoRA adapters on every linear layer; bench/ggufWriter.ts):
 *
 *   npx tsx bench/adapterMemory.ts [--adapters 4] [--rank 16] [--ctx 512] [--dir DIR] [--slm-bin PATH] [--markdown]
 *
 * Configurations, each a fresh server (`--threads 1 --parallel 1 --idle-timeout 0`) that answers one
 * completion per model, after which its memory is read from /proc/PID/status and /proc/PID/smaps_rollup:
 *   base      the base alone (the reference);
 *   adapters  N registered fine-tunes `base+aI` on the one base file, as `slm finetune` registers them;
 *   copies    N separate models, each its own copy of the base file (as N merged fine-tunes would be).
 * RSS counts every mapping of a file page, so a base loaded twice from one file counts twice; PSS
 * shares a page between its mappings. The weights are mmapped (llama.cpp's default), so on a CPU they
 * are file pages (RssFile); contexts, KV caches and adapters are anonymous memory (RssAnon).
 * --slm-bin runs another build of slm (e.g. the commit before this change) for the same configurations.
 * --dir keeps the generated files for another run (they take (N + 1) × ~270 MB).
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa } from "execa";
import { BIN, arg, fmt, markdownTable, printMachine, runBench, table } from "./lib.js";
import { SMOLLM2_135M, writeLlamaGguf, writeLlamaLoraGguf } from "./ggufWriter.js";

interface Memory {
  rss: number;
  rssFile: number;
  rssAnon: number;
  pss: number;
}

function readMemory(pid: number): Memory {
  const kb = (text: string, key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? NaN) * 1024;
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
  return { rss: kb(status, "VmRSS"), rssFile: kb(status, "RssFile"), rssAnon: kb(status, "RssAnon"), pss: kb(rollup, "Pss") };
}

interface Registered {
  name: string;
  file: string;
  adapter?: string;
}

function writeRegistry(home: string, models: Registered[]): void {
  mkdirSync(home, { recursive: true });
  const entries = Object.fromEntries(
    models.map((m) => {
      const size = statSync(m.file).size;
      const entry = {
        name: m.name, format: "gguf", path: m.file, files: [{ path: m.file, size }], source: { type: "derived" }, size, architecture: "llama",
        ...(m.adapter ? { adapters: [{ path: m.adapter, scale: 1 }] } : {}), lineage: [], createdAt: new Date().toISOString(),
      };
      return [m.name, entry];
    }),
  );
  writeFileSync(path.join(home, "registry.json"), JSON.stringify({ version: 1, models: entries }));
}

/** Starts a server, asks each model once, reads the server's memory, stops it. */
async function measure(bin: string, models: Registered[], ctx: string): Promise<Memory> {
  const home = mkdtempSync(path.join(tmpdir(), "slm-adapter-mem-"));
  try {
    writeRegistry(home, models);
    const proc = execa("node", [bin, "serve", "--port", "0", "--threads", "1", "--parallel", "1", "--ctx", ctx, "--idle-timeout", "0"], { env: { ...process.env, SLM_HOME: home }, reject: false });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let err = "";
        proc.stderr!.on("data", (d: Buffer) => {
          err += d.toString();
          const m = /listening on (http:\/\/[^\s(]+)/.exec(err);
          if (m) resolve(m[1]!);
        });
        void proc.then(() => reject(new Error(`slm serve exited:\n${err}`)));
      });
      for (const m of models) {
        const r = await fetch(`${url}/v1/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ model: m.name, prompt: "\u2581w1 \u2581w2 \u2581w3", max_tokens: 4, temperature: 0 }) });
        if (r.status !== 200) throw new Error(`${m.name}: HTTP ${r.status} ${await r.text()}`);
      }
      return readMemory(proc.pid!);
    } finally {
      proc.kill("SIGINT");
      await proc;
    }
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

runBench(async () => {
  const n = Number(arg("--adapters", "4"));
  const rank = Number(arg("--rank", "16"));
  const ctx = arg("--ctx", "512");
  const bin = path.resolve(arg("--slm-bin", BIN));
  const keep = process.argv.includes("--dir");
  const dir = keep ? path.resolve(arg("--dir", "")) : mkdtempSync(path.join(tmpdir(), "slm-adapter-mem-files-"));
  mkdirSync(dir, { recursive: true });
  try {
    const base = path.join(dir, "base-f16.gguf");
    if (!existsSync(base)) writeLlamaGguf(base, SMOLLM2_135M);
    const adapters: string[] = [];
    const copies: string[] = [];
    for (let i = 1; i <= n; i++) {
      const a = path.join(dir, `adapter-r${rank}-${i}.gguf`);
      if (!existsSync(a)) writeLlamaLoraGguf(a, SMOLLM2_135M, rank);
      adapters.push(a);
      const c = path.join(dir, `copy-${i}.gguf`);
      if (!existsSync(c)) copyFileSync(base, c);
      copies.push(c);
    }
    printMachine();
    const mib = (b: number) => fmt(b / 2 ** 20);
    console.log(`${SMOLLM2_135M.name}: base ${mib(statSync(base).size)} MiB, adapters ${mib(statSync(adapters[0]!).size)} MiB each (rank ${rank}), ${n} of them; --ctx ${ctx}; slm ${bin}`);
    const configs: [string, Registered[]][] = [
      ["base alone", [{ name: "base", file: base }]],
      [`base + ${n} adapters (base+aI)`, [{ name: "base", file: base }, ...adapters.map((a, i) => ({ name: `base+a${i + 1}`, file: base, adapter: a }))]],
      [`${n} adapters only (base+aI)`, adapters.map((a, i) => ({ name: `base+a${i + 1}`, file: base, adapter: a }))],
      [`${n} separate models (copies)`, copies.map((c, i) => ({ name: `m${i + 1}`, file: c }))],
    ];
    const rows: string[][] = [];
    for (const [label, models] of configs) {
      const m = await measure(bin, models, ctx);
      rows.push([label, String(models.length), mib(m.rss), mib(m.rssFile), mib(m.rssAnon), mib(m.pss)]);
    }
    const header = ["configuration", "models", "RSS MiB", "RssFile MiB", "RssAnon MiB", "PSS MiB"];
    console.log(process.argv.includes("--markdown") ? markdownTable(header, rows) : table(header, rows));
  } finally {
    if (!keep) rmSync(dir, { recursive: true, force: true });
  }
});
