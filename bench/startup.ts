/**
 * Cold start of the CLI: wall time of whole processes, spawned one after another.
 *
 *   npx tsx bench/startup.ts [--runs N] [--models N] [--no-imports] [--slm-bin PATH] [--cpu-prof DIR]
 *
 * Times, interleaved (one of each per round, after 2 untimed warm-up rounds):
 *   node -e 0                         the floor: starting node itself on this machine
 *   node bin/slm.js --help
 *   node bin/slm.js list              with N (default 100) models in a temp SLM_HOME's registry.json
 * and prints median, p90, min and the targets (--help ≤ 150 ms, list ≤ 250 ms median). When
 * NODE_EXTRA_CA_CERTS is set, every case also runs without it (node 20 parses that bundle at each start).
 * Unless --no-imports: then what each module on the startup path adds to the load time, from
 * importing them in load order in one fresh node (median of 15). With --cpu-prof DIR, each slm case
 * runs once more under `node --cpu-prof` (100 µs sampling, last environment); summarise the profiles
 * with bench/cpuprofile.ts.
 * "Cold" means a new process each time; the files are in the page cache (nothing is evicted).
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { BIN, ROOT, childrenCpuSeconds, fmt, machine, machineCpuSeconds, markdownTable, median, percentile, printMachine, table } from "./lib.js";
import type { ModelEntry, Registry } from "../src/backends/store/types.js";

const argv = process.argv.slice(2);
function flag(name: string, def: string): string {
  const i = argv.indexOf(name);
  return i < 0 ? def : argv[i + 1] ?? def;
}
const runs = Number(flag("--runs", "30"));
const nModels = Number(flag("--models", "100"));
const imports = !argv.includes("--no-imports");
const slmBin = path.resolve(flag("--slm-bin", BIN));
const cpuProfDir = flag("--cpu-prof", "");
if (!(runs >= 1) || !(nModels >= 0)) {
  console.error("usage: npx tsx bench/startup.ts [--runs N] [--models N] [--no-imports] [--slm-bin PATH] [--cpu-prof DIR]");
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------------
// A registry of realistic entries (the shape of src/backends/store/types.ts; the files need not exist)

const GGUF_REPOS: [string, string, number, number, string][] = [
  // repo, file stem, parameters, context, architecture
  ["bartowski/Qwen2.5-0.5B-Instruct-GGUF", "Qwen2.5-0.5B-Instruct", 494_032_768, 32_768, "qwen2"],
  ["bartowski/Qwen2.5-1.5B-Instruct-GGUF", "Qwen2.5-1.5B-Instruct", 1_543_714_304, 32_768, "qwen2"],
  ["bartowski/Qwen2.5-3B-Instruct-GGUF", "Qwen2.5-3B-Instruct", 3_085_938_688, 32_768, "qwen2"],
  ["bartowski/Llama-3.2-1B-Instruct-GGUF", "Llama-3.2-1B-Instruct", 1_235_814_400, 131_072, "llama"],
  ["bartowski/Llama-3.2-3B-Instruct-GGUF", "Llama-3.2-3B-Instruct", 3_212_749_824, 131_072, "llama"],
  ["microsoft/Phi-3-mini-4k-instruct-gguf", "Phi-3-mini-4k-instruct", 3_821_079_552, 4_096, "phi3"],
  ["bartowski/gemma-2-2b-it-GGUF", "gemma-2-2b-it", 2_614_341_888, 8_192, "gemma2"],
  ["bartowski/SmolLM2-1.7B-Instruct-GGUF", "SmolLM2-1.7B-Instruct", 1_711_376_384, 8_192, "llama"],
  ["bartowski/SmolLM2-360M-Instruct-GGUF", "SmolLM2-360M-Instruct", 361_821_120, 8_192, "llama"],
  ["TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF", "tinyllama-1.1b-chat-v1.0", 1_100_048_384, 2_048, "llama"],
  ["bartowski/Mistral-7B-Instruct-v0.3-GGUF", "Mistral-7B-Instruct-v0.3", 7_248_023_552, 32_768, "llama"],
  ["unsloth/Qwen3-0.6B-GGUF", "Qwen3-0.6B", 596_049_920, 40_960, "qwen3"],
  ["unsloth/Qwen3-1.7B-GGUF", "Qwen3-1.7B", 1_720_574_976, 40_960, "qwen3"],
];
const QUANTS: [string, number][] = [["Q4_K_M", 4.85], ["Q8_0", 8.5], ["Q5_K_M", 5.7], ["Q6_K", 6.6], ["Q4_0", 4.55], ["IQ4_XS", 4.3], ["Q3_K_L", 4.3]];
const HF_REPOS: [string, number][] = [
  ["Qwen/Qwen2.5-0.5B-Instruct", 494_032_768],
  ["HuggingFaceTB/SmolLM2-135M-Instruct", 134_515_008],
  ["HuggingFaceTB/SmolLM2-360M-Instruct", 361_821_120],
  ["meta-llama/Llama-3.2-1B-Instruct", 1_235_814_400],
  ["google/gemma-2-2b-it", 2_614_341_888],
];

const hex = (seed: number, len: number) => {
  let s = "";
  for (let x = seed * 2_654_435_761; s.length < len; x = (x * 1_103_515_245 + 12_345) % 2 ** 31) s += x.toString(16).padStart(8, "0");
  return s.slice(0, len);
};

function makeRegistry(n: number, hubCache: string, home: string): Registry {
  const models: Record<string, ModelEntry> = {};
  const day = Date.parse("2025-01-01T00:00:00Z");
  for (let i = 0; models && Object.keys(models).length < n; i++) {
    const createdAt = new Date(day + i * 3_600_000).toISOString();
    const commit = hex(i + 1, 40);
    const kind = i % 10;
    if (kind < 7) {
      // A pulled GGUF: most of a registry.
      const [repo, stem, parameters, contextLength, architecture] = GGUF_REPOS[i % GGUF_REPOS.length]!;
      const [quant, bits] = QUANTS[Math.floor(i / GGUF_REPOS.length) % QUANTS.length]!;
      const name = `${repo}:${quant}${i >= GGUF_REPOS.length * QUANTS.length ? `-${i}` : ""}`;
      const size = Math.round((parameters * bits) / 8);
      const file = path.join(hubCache, `models--${repo.replace("/", "--")}`, "snapshots", commit, `${stem}-${quant}.gguf`);
      models[name] = {
        name, format: "gguf", path: file,
        files: [{ path: file, repoPath: `${stem}-${quant}.gguf`, size, sha256: hex(i + 1000, 64) }],
        source: { type: "hub", repo, revision: "main", commit, endpoint: "https://huggingface.co" },
        quant, size, parameters, contextLength, architecture, lineage: [], createdAt,
      };
    } else if (kind < 9) {
      // Pulled safetensors weights (--format hf): several files.
      const [repo, parameters] = HF_REPOS[i % HF_REPOS.length]!;
      const name = `${repo}${i >= 10 * HF_REPOS.length ? `-${i}` : ""}:hf`;
      const dir = path.join(hubCache, `models--${repo.replace("/", "--")}`, "snapshots", commit);
      const weights = parameters * 2;
      const names = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "model.safetensors"];
      const files = names.map((f, j) => ({
        path: path.join(dir, f), repoPath: f,
        size: f === "model.safetensors" ? weights : 1_000 + j * 7_000,
        ...(f.endsWith(".safetensors") ? { sha256: hex(i * 10 + j, 64) } : { gitOid: hex(i * 10 + j, 40) }),
      }));
      models[name] = {
        name, format: "hf", path: dir, files,
        source: { type: "hub", repo, revision: "main", commit, endpoint: "https://huggingface.co" },
        size: files.reduce((a, f) => a + f.size, 0), parameters, architecture: "llama", lineage: [], createdAt,
      };
    } else {
      // Made by slm (a quantize or a fine-tune): lineage, a file under SLM_HOME.
      const [repo, , parameters, contextLength, architecture] = GGUF_REPOS[i % GGUF_REPOS.length]!;
      const name = `my-${repo.split("/")[1]!.toLowerCase().replace(/-gguf$/, "")}-${i}`;
      const file = path.join(home, "models", name, `${name}-Q4_K_M.gguf`);
      const size = Math.round((parameters * 4.85) / 8);
      models[name] = {
        name, format: "gguf", path: file, files: [{ path: file, size, sha256: hex(i + 5000, 64) }],
        source: { type: "derived" }, quant: "Q4_K_M", size, parameters, contextLength, architecture,
        lineage: [{ from: `${repo}:F16`, method: "quantize", parameters: { type: "Q4_K_M", imatrix: false }, at: createdAt }],
        createdAt,
      };
    }
  }
  return { version: 1, models };
}

// ---------------------------------------------------------------------------------------------------

function timeOnce(args: string[], env: NodeJS.ProcessEnv): number {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, args, { env, encoding: "utf8", maxBuffer: 16 << 20 });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`node ${args.join(" ")} exited ${r.status}: ${r.stderr}`);
  return ms;
}

function main(): void {
  printMachine();
  const root = mkdtempSync(path.join(tmpdir(), "slm-bench-startup-"));
  try {
    const home = path.join(root, "slm-home");
    const hubCache = path.join(root, "hf", "hub");
    mkdirSync(home, { recursive: true });
    const reg = makeRegistry(nModels, hubCache, home);
    writeFileSync(path.join(home, "registry.json"), JSON.stringify(reg, null, 2) + "\n");
    const env: NodeJS.ProcessEnv = {
      ...process.env, SLM_HOME: home, HF_HOME: path.join(root, "hf"), HF_HUB_CACHE: hubCache,
      HF_HUB_OFFLINE: "", HF_TOKEN: "", CI: "1", NO_COLOR: "1",
    };

    // Sanity: list shows every model.
    const listed = spawnSync(process.execPath, [slmBin, "list", "--json"], { env, encoding: "utf8" });
    // `slm list --json` gives {models, leftovers}; before the leftovers it gave the models' array itself.
    const result = listed.stdout.trim().split("\n").map((l) => JSON.parse(l) as { type: string; data?: unknown[] | { models?: unknown[] } }).find((e) => e.type === "result");
    const listedRows = Array.isArray(result?.data) ? result.data : result?.data?.models;
    if (listed.status !== 0 || !Array.isArray(listedRows) || listedRows.length < nModels) {
      throw new Error(`slm list did not list the ${nModels} models: ${listed.stderr}`);
    }
    console.log(`registry: ${nModels} models (${Object.values(reg.models).filter((m) => m.format === "gguf" && m.source.type === "hub").length} pulled GGUF, ${Object.values(reg.models).filter((m) => m.format === "hf").length} hf, ${Object.values(reg.models).filter((m) => m.source.type === "derived").length} derived), ${JSON.stringify(reg).length} bytes; slm list shows ${listedRows.length} rows (built-ins included)`);

    const cases: { name: string; args: string[]; target?: number }[] = [
      { name: "node -e 0 (floor)", args: ["-e", "0"] },
      { name: "slm --help", args: [slmBin, "--help"], target: 150 },
      { name: `slm list (${nModels} models)`, args: [slmBin, "list"], target: 250 },
    ];
    // NODE_EXTRA_CA_CERTS (set in some sandboxes and corporate setups) makes node 20 read and parse the
    // bundle at every start, before any script runs: measure with it as set and without it.
    const envs: { label: string; env: NodeJS.ProcessEnv }[] = [{ label: process.env.NODE_EXTRA_CA_CERTS ? "env as is (NODE_EXTRA_CA_CERTS set)" : "env as is", env }];
    if (process.env.NODE_EXTRA_CA_CERTS) {
      const without = { ...env };
      delete without.NODE_EXTRA_CA_CERTS;
      envs.push({ label: "without NODE_EXTRA_CA_CERTS", env: without });
    }
    const key = (e: number, c: number) => `${e}/${c}`;
    const times = new Map<string, number[]>();
    const m0 = machineCpuSeconds();
    const c0 = childrenCpuSeconds();
    const self0 = process.cpuUsage();
    const t0 = performance.now();
    for (let round = -2; round < runs; round++) {
      envs.forEach((e, ei) =>
        cases.forEach((c, ci) => {
          const ms = timeOnce(c.args, e.env);
          if (round >= 0) times.set(key(ei, ci), [...(times.get(key(ei, ci)) ?? []), ms]);
        }),
      );
    }
    const elapsed = (performance.now() - t0) / 1000;
    const selfU = process.cpuUsage(self0);
    const others = Math.max(0, machineCpuSeconds().busy - m0.busy - (childrenCpuSeconds() - c0) - (selfU.user + selfU.system) / 1e6);
    const othersNote = `other processes used ${fmt(others, 1)} CPU-s during these ${fmt(elapsed, 1)} s (${fmt((100 * others) / elapsed)}% of one core)`;
    const header = ["command", "environment", "median ms", "p90 ms", "min ms", "median − floor", "target (median)"];
    const rows = envs.flatMap((e, ei) => {
      const floor = median(times.get(key(ei, 0))!);
      return cases.map((c, ci) => {
        const t = times.get(key(ei, ci))!;
        const med = median(t);
        return [c.name, e.label, fmt(med), fmt(percentile(t, 90)), fmt(Math.min(...t)), c.target ? fmt(med - floor) : "", c.target ? `≤ ${c.target}: ${med <= c.target ? "met" : "MISSED"}` : ""];
      });
    });
    console.log(`\nCold start, ${runs} runs each, interleaved, after 2 warm-up rounds (wall time of spawnSync)\n`);
    console.log(table(header, rows));
    console.log(`\n${othersNote}${others > 0.1 * elapsed ? ": the machine was not quiet, rerun when it is" : ""}`);

    let importRows: string[][] = [];
    if (imports) {
      // The modules `slm list` loads, in the order it loads them, imported one after another in one fresh
      // node: each figure is what that module adds on top of everything above it (its own code and
      // whatever it pulls in that was not loaded yet). The first rows are all `slm --help` loads.
      const chain = [
        "data:text/javascript,",
        "commander",
        "dist/core/errors.js",
        "dist/core/paths.js",
        "dist/core/format.js",
        "dist/commands/action.js",
        "dist/commands/pull.js",
        "dist/commands/list.js",
        "dist/commands/info.js",
        "dist/commands/rm.js",
        "dist/commands/doctor.js",
        "dist/cli.js",
        "dist/ui/render.js",
        "write-file-atomic",
        "proper-lockfile",
        "dist/backends/store/registry.js",
        "fastest-levenshtein",
        "dist/core/catalog.js",
        "dist/backends/store/builtin.js",
      ];
      const base = path.dirname(path.dirname(slmBin));
      const urls = chain.map((m) => (m.startsWith("dist/") ? pathToFileURL(path.join(base, m)).href : m));
      const code = `const out=[];for(const u of ${JSON.stringify(urls)}){const t=performance.now();await import(u);out.push(performance.now()-t)}process.stdout.write(JSON.stringify(out))`;
      const reps = 15;
      const samples: number[][] = [];
      for (let i = 0; i < reps; i++) {
        const r = spawnSync(process.execPath, ["--input-type=module", "-e", code], { cwd: ROOT, env: envs[envs.length - 1]!.env, encoding: "utf8" });
        if (r.status !== 0) throw new Error(`import chain: ${r.stderr}`);
        samples.push(JSON.parse(r.stdout) as number[]);
      }
      const meds = chain.map((_, i) => median(samples.map((xs) => xs[i]!)));
      let cum = 0;
      importRows = chain.map((m, i) => {
        cum += meds[i]!;
        return [m === "data:text/javascript," ? "(an empty module: the ESM loader's first use)" : m, fmt(meds[i]!, 1), fmt(cum, 1)];
      });
      console.log(`\nWhat each module on the startup path adds, imported in order in one fresh node (${envs[envs.length - 1]!.label}), median of ${reps}\n`);
      console.log(table(["module (in load order)", "adds ms", "cumulative ms"], importRows));
    }

    if (cpuProfDir) {
      mkdirSync(cpuProfDir, { recursive: true });
      for (const [i, c] of cases.entries()) {
        if (i === 0) continue;
        const name = `startup-${c.args.slice(1).join("-").replace(/[^a-z0-9-]/gi, "")}.cpuprofile`;
        timeOnce(["--cpu-prof", "--cpu-prof-interval", "100", `--cpu-prof-dir=${cpuProfDir}`, `--cpu-prof-name=${name}`, ...c.args], envs[envs.length - 1]!.env);
        console.log(`CPU profile: ${path.join(cpuProfDir, name)}`);
      }
    }

    const m = machine();
    console.log(`\nmarkdown:\n\nMachine: ${m.nproc} CPUs, ${m.cpu}, ${m.ram}, node ${m.node}, ${m.kernel}, ${m.date}\n`);
    console.log(markdownTable(header, rows));
    if (importRows.length) {
      console.log("");
      console.log(markdownTable(["module (in load order)", "adds ms", "cumulative ms"], importRows));
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

main();
