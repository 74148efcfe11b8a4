/**
 * Pull throughput: `slm pull` (download + sha256 verification + registration) against curl, on the
 * same file from the same local Hub server, in the same run.
 *
 *   npx tsx bench/pull.ts [SIZE] [--reps N] [--connections 1,2,4] [--server process|inline] [--tmp DIR]
 *                         [--cpu-prof DIR] [--slm-bin PATH]
 *
 * SIZE: bytes, or with a suffix K/M/G (binary: 1G = 1 GiB). Default 1G.
 *
 * What it does:
 *  - writes a SIZE-byte file under a temp dir: a minimal valid GGUF header, then one random 1 MiB block
 *    repeated with a varying counter and byte in each copy (not trivially compressible, fast to make);
 *  - serves it as repo bench/big-GGUF, file big-Q8_0.gguf, with test/helpers/hubServer.ts, by default
 *    in a separate node process (see docs/benchmarks.md for why), LFS redirect to /cdn/ included;
 *  - times, alternating and rotating the order each repetition:
 *      curl -s -L -o <tmp> <server>/bench/big-GGUF/resolve/main/big-Q8_0.gguf
 *      node bin/slm.js pull bench/big-GGUF:Q8_0 --connections N --json   (fresh SLM_HOME, HF_HUB_CACHE)
 *    deleting each download (and `sync`) before the next run;
 *  - times `sha256sum` of the file, and node's own sha256 over the same file, as the cost of verifying;
 *  - prints medians (MB = 10^6 bytes), the ratio slm/curl, and a per-phase breakdown of slm's runs from
 *    its --json event timestamps.
 * The source file stays in the page cache throughout (the server hashed it at start-up); the
 * downloads land in the page cache and are deleted before they are written back.
 */
import { spawn, spawnSync } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { BIN, ROOT, childrenCpuSeconds, fmt, machine, machineCpuSeconds, markdownTable, median, printMachine, processCpuSeconds, table } from "./lib.js";

const REPO = "bench/big-GGUF";
const FILE = "big-Q8_0.gguf";
const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------------
// Arguments

function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i.exec(s.trim());
  if (!m) throw new Error(`bad size: ${s}`);
  const mult = { "": 1, k: 1024, m: MiB, g: 1024 * MiB, t: 1024 * 1024 * MiB }[m[2]!.toLowerCase() as "" | "k" | "m" | "g" | "t"];
  return Math.round(Number(m[1]) * mult);
}

const argv = process.argv.slice(2);
function flag(name: string, def: string): string {
  const i = argv.indexOf(name);
  if (i < 0) return def;
  const v = argv[i + 1];
  if (v === undefined) throw new Error(`${name} needs a value`);
  argv.splice(i, 2);
  return v;
}
const reps = Number(flag("--reps", "3"));
const connections = flag("--connections", "1,2,4").split(",").map(Number);
const serverMode = flag("--server", "process") as "process" | "inline";
const tmpBase = flag("--tmp", tmpdir());
const cpuProfDir = flag("--cpu-prof", "");
/** Another build of slm to time instead of this checkout's bin/slm.js (e.g. a patched copy, for an A/B). */
const slmBin = path.resolve(flag("--slm-bin", BIN));
const size = parseSize(argv[0] ?? "1G");
if (!(reps >= 1) || connections.some((c) => !(c >= 1)) || !["process", "inline"].includes(serverMode)) {
  console.error("usage: npx tsx bench/pull.ts [SIZE] [--reps N] [--connections 1,2,4] [--server process|inline] [--tmp DIR] [--cpu-prof DIR] [--slm-bin PATH]");
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------------
// The file

/** A GGUF v3 header with no tensors and two keys, so that slm's header read succeeds as for a real model. */
function ggufHeader(): Buffer {
  const parts: Buffer[] = [];
  const u32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(n); parts.push(b); };
  const u64 = (n: number) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(n)); parts.push(b); };
  const str = (s: string) => { u64(Buffer.byteLength(s)); parts.push(Buffer.from(s)); };
  parts.push(Buffer.from("GGUF"));
  u32(3); // version
  u64(0); // tensors
  u64(2); // metadata keys
  str("general.architecture"); u32(8); str("llama"); // 8 = string
  str("general.file_type"); u32(4); u32(7); // 4 = uint32, 7 = MOSTLY_Q8_0
  return Buffer.concat(parts);
}

function makeFile(file: string, bytes: number): void {
  const block = randomBytes(MiB);
  const fd = openSync(file, "w");
  try {
    const header = ggufHeader();
    writeSync(fd, header);
    let written = header.length;
    for (let i = 0; written < bytes; i++) {
      block.writeUInt32LE(i, 0);
      block[(i * 65_537 + 4) % MiB] ^= (i % 255) + 1;
      const n = Math.min(MiB, bytes - written);
      writeSync(fd, block, 0, n);
      written += n;
    }
  } finally {
    closeSync(fd);
  }
}

// ---------------------------------------------------------------------------------------------------
// The server

interface Served {
  url: string;
  sha256: string;
  /** CPU seconds the server has used so far. */
  cpu(): number;
  close(): Promise<void>;
}

async function serve(file: string): Promise<Served> {
  if (serverMode === "inline") {
    const { startHubServer } = await import("../test/helpers/hubServer.js");
    const s = await startHubServer({ repos: [{ id: REPO, files: [{ path: FILE, file }] }] });
    return {
      url: s.url,
      sha256: s.fileSha256(REPO, FILE),
      cpu: () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; },
      close: () => s.close(),
    };
  }
  // Run through tsx from the source tree; a bundled copy of this bench (.mjs) has a bundled server beside it.
  const script = fileURLToPath(new URL(import.meta.url.endsWith(".ts") ? "./hubServerProcess.ts" : "./hubServerProcess.mjs", import.meta.url));
  const child = spawn(process.execPath, [...(script.endsWith(".ts") ? ["--import", "tsx"] : []), script, REPO, `${FILE}=${file}`], {
    cwd: ROOT,
    stdio: ["pipe", "pipe", "inherit"],
  });
  const lines = createInterface({ input: child.stdout! });
  const first = await new Promise<string>((resolve, reject) => {
    lines.once("line", resolve);
    child.once("exit", (code) => reject(new Error(`the server process exited (${code}) before listening`)));
  });
  const info = JSON.parse(first) as { url: string; pid: number; files: Record<string, string> };
  return {
    url: info.url,
    sha256: info.files[FILE]!,
    cpu: () => processCpuSeconds(child.pid!),
    close: async () => {
      child.stdin!.end();
      await new Promise((r) => (child.exitCode === null ? child.once("exit", r) : r(undefined)));
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// Runs

interface Run {
  client: string;
  wallS: number;
  clientCpuS: number;
  serverCpuS: number;
  /** CPU seconds that other processes on the machine used during the run (steal included). */
  otherCpuS?: number;
  /** slm only, from its --json events: spawn → first event, resolve step, file step (download + verify), file done → exit. */
  phases?: { startS: number; resolveS: number; transferS: number; finishS: number };
}

function waitExit(child: ReturnType<typeof spawn>): Promise<number> {
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code, sig) => resolve(code ?? (sig ? 128 : 1)));
  });
}

async function runCurl(url: string, dir: string, server: Served): Promise<Run> {
  const out = path.join(dir, "out.bin");
  const cpu0 = childrenCpuSeconds();
  const s0 = server.cpu();
  const t0 = performance.now();
  const child = spawn("curl", ["-s", "-L", "-o", out, `${url}/${REPO}/resolve/main/${FILE}`], { stdio: ["ignore", "ignore", "inherit"] });
  const code = await waitExit(child);
  const wallS = (performance.now() - t0) / 1000;
  const serverCpuS = server.cpu() - s0;
  if (code !== 0) throw new Error(`curl exited ${code}`);
  const got = statSync(out).size;
  if (got !== size) throw new Error(`curl wrote ${got} bytes, expected ${size}`);
  return { client: "curl", wallS, clientCpuS: childrenCpuSeconds() - cpu0, serverCpuS };
}

async function runSlm(url: string, dir: string, server: Served, conns: number, profile: boolean): Promise<Run> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    SLM_HOME: path.join(dir, "slm-home"),
    HF_HOME: path.join(dir, "hf"),
    HF_HUB_CACHE: path.join(dir, "hf", "hub"),
    HF_ENDPOINT: url,
    HF_TOKEN: "",
    HF_HUB_OFFLINE: "",
    SLM_PULL_CONNECTIONS: "",
    // Set in some sandboxes: node 20 then parses the CA bundle at every start (~80 ms here), which a
    // user's machine would not do; curl is unaffected over plain http.
    NODE_EXTRA_CA_CERTS: "",
    CI: "1",
    NO_COLOR: "1",
  };
  const nodeArgs = profile ? ["--cpu-prof", `--cpu-prof-dir=${cpuProfDir}`, `--cpu-prof-name=slm-pull-c${conns}-${Date.now()}.cpuprofile`] : [];
  const cpu0 = childrenCpuSeconds();
  const s0 = server.cpu();
  const spawnedAt = Date.now();
  const t0 = performance.now();
  const child = spawn(process.execPath, [...nodeArgs, slmBin, "pull", `${REPO}:Q8_0`, "--connections", String(conns), "--json"], { env, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const events: { type: string; ts: number; id?: string; status?: string; level?: string; message?: string; data?: { downloadedBytes?: number } }[] = [];
  const lines = createInterface({ input: child.stdout! });
  const linesClosed = new Promise((r) => lines.once("close", r));
  lines.on("line", (l) => {
    try {
      events.push(JSON.parse(l));
    } catch {
      // not an event
    }
  });
  const code = await waitExit(child);
  const exitedAt = Date.now();
  const wallS = (performance.now() - t0) / 1000;
  const serverCpuS = server.cpu() - s0;
  await linesClosed;
  const result = events.find((e) => e.type === "result");
  if (code !== 0 || !result) throw new Error(`slm pull exited ${code}: ${stderr}\n${events.map((e) => JSON.stringify(e)).join("\n")}`);
  if (result.data?.downloadedBytes !== size) throw new Error(`slm pull downloaded ${result.data?.downloadedBytes} bytes, expected ${size}`);
  for (const w of events.filter((e) => e.type === "log" && e.level === "warn")) console.warn(`  slm warned: ${w.message}`);
  const at = (type: string, id: string, status: string) => events.find((e) => e.type === type && e.id === id && e.status === status)?.ts ?? NaN;
  const fileStart = at("step", FILE, "start");
  const fileDone = at("step", FILE, "done");
  return {
    client: `slm --connections ${conns}`,
    wallS,
    clientCpuS: childrenCpuSeconds() - cpu0,
    serverCpuS,
    phases: {
      startS: (events[0]!.ts - spawnedAt) / 1000,
      resolveS: (at("step", "resolve", "done") - events[0]!.ts) / 1000,
      transferS: (fileDone - fileStart) / 1000,
      finishS: (exitedAt - fileDone) / 1000,
    },
  };
}

function timeCommand(cmd: string, args: string[]): { wallS: number; cpuS: number; out: string } {
  const cpu0 = childrenCpuSeconds();
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 1 << 20, env: { ...process.env, NODE_EXTRA_CA_CERTS: "" } });
  const wallS = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr}`);
  return { wallS, cpuS: childrenCpuSeconds() - cpu0, out: r.stdout };
}

// ---------------------------------------------------------------------------------------------------

const MB = (bytes: number, s: number) => bytes / 1e6 / s;

async function main(): Promise<void> {
  printMachine();
  const root = mkdtempSync(path.join(tmpBase, "slm-bench-pull-"));
  const cleanup = () => rmSync(root, { recursive: true, force: true });
  process.on("SIGINT", () => {
    cleanup();
    process.exit(130);
  });
  try {
    const src = path.join(root, "src", FILE);
    mkdirSync(path.dirname(src));
    let t = performance.now();
    makeFile(src, size);
    console.log(`file: ${size} bytes (${(size / 2 ** 30).toFixed(2)} GiB) written in ${fmt((performance.now() - t) / 1000, 1)} s: ${src}`);
    t = performance.now();
    const server = await serve(src);
    if (slmBin !== BIN) console.log(`slm: ${slmBin}`);
    console.log(`server (${serverMode}): ${server.url}, ready in ${fmt((performance.now() - t) / 1000, 1)} s (it hashes the file, which also puts it in the page cache)`);
    try {
      const dirty = ["dirty_ratio", "dirty_background_ratio", "dirty_expire_centisecs"].map((k) => {
        try {
          return `${k}=${readFileSync(`/proc/sys/vm/${k}`, "utf8").trim()}`;
        } catch {
          return `${k}=?`;
        }
      });
      console.log(`page cache: source file cached; downloads are deleted + sync after each run (vm: ${dirty.join(" ")})`);

      // Reference: the cost of verifying, on the cached file.
      const sums = { sha256sum: [] as number[], node: [] as number[] };
      const nodeHash = `const h=require("crypto").createHash("sha256");require("fs").createReadStream(process.argv[1],{highWaterMark:1<<20}).on("data",c=>h.update(c)).on("end",()=>console.log(h.digest("hex")))`;
      for (let i = 0; i < reps; i++) {
        const a = timeCommand("sha256sum", [src]);
        if (!a.out.startsWith(server.sha256)) throw new Error("sha256sum disagrees with the server");
        sums.sha256sum.push(a.wallS);
        const b = timeCommand(process.execPath, ["-e", nodeHash, src]);
        if (!b.out.startsWith(server.sha256)) throw new Error("node sha256 disagrees with the server");
        sums.node.push(b.wallS);
      }

      // Warm-up (untimed): one curl download.
      {
        const dir = path.join(root, "warmup");
        mkdirSync(dir);
        await runCurl(server.url, dir, server);
        rmSync(dir, { recursive: true, force: true });
        spawnSync("sync");
      }

      type Client = { name: string; run: (dir: string, profile: boolean) => Promise<Run> };
      const clients: Client[] = [
        { name: "curl", run: (dir) => runCurl(server.url, dir, server) },
        ...connections.map((c) => ({ name: `slm --connections ${c}`, run: (dir: string, profile: boolean) => runSlm(server.url, dir, server, c, profile) })),
      ];
      const runs: Run[] = [];
      let n = 0;
      for (let rep = 0; rep < reps; rep++) {
        // Rotate the order so that no client always runs first (or right after another).
        const order = clients.map((_, i) => clients[(i + rep) % clients.length]!);
        for (const c of order) {
          const dir = path.join(root, `run-${n++}`);
          mkdirSync(dir);
          const m0 = machineCpuSeconds();
          const self0 = process.cpuUsage();
          const r = await c.run(dir, !!cpuProfDir && rep === reps - 1);
          const selfU = process.cpuUsage(self0);
          const harness = serverMode === "process" ? (selfU.user + selfU.system) / 1e6 : 0; // inline: counted as server
          r.otherCpuS = Math.max(0, machineCpuSeconds().busy - m0.busy - r.clientCpuS - r.serverCpuS - harness);
          runs.push(r);
          const busy = r.otherCpuS > 0.25 * r.wallS;
          console.log(`  rep ${rep + 1}  ${c.name.padEnd(20)} ${fmt(r.wallS, 2)} s  ${fmt(MB(size, r.wallS))} MB/s  cpu ${fmt(r.clientCpuS, 2)} s, server cpu ${fmt(r.serverCpuS, 2)} s, other processes ${fmt(r.otherCpuS, 2)} s${busy ? "  <- the machine was busy: this run is disturbed" : ""}`);
          rmSync(dir, { recursive: true, force: true });
          spawnSync("sync");
        }
      }

      // Results
      const curlMed = median(runs.filter((r) => r.client === "curl").map((r) => MB(size, r.wallS)));
      const header = ["client", "runs (MB/s)", "median MB/s", "median s", "client CPU s", "server CPU s", "others' CPU s (max)", "vs curl"];
      const rows = clients.map((c) => {
        const rs = runs.filter((r) => r.client === c.name);
        const mbs = rs.map((r) => MB(size, r.wallS));
        const med = median(mbs);
        return [c.name, mbs.map((x) => fmt(x)).join(" / "), fmt(med), fmt(median(rs.map((r) => r.wallS)), 2), fmt(median(rs.map((r) => r.clientCpuS)), 2), fmt(median(rs.map((r) => r.serverCpuS)), 2), fmt(Math.max(...rs.map((r) => r.otherCpuS ?? 0)), 2), `${fmt(med / curlMed, 2)}×`];
      });
      const refRows = [
        ["sha256sum", sums.sha256sum.map((s) => fmt(MB(size, s))).join(" / "), fmt(MB(size, median(sums.sha256sum))), fmt(median(sums.sha256sum), 2), "", "", "", ""],
        ["node sha256 (1 MiB reads)", sums.node.map((s) => fmt(MB(size, s))).join(" / "), fmt(MB(size, median(sums.node))), fmt(median(sums.node), 2), "", "", "", ""],
      ];
      const phaseHeader = ["slm phases (median s)", "spawn→1st event", "resolve", "download+verify", "→ exit", "download+verify MB/s"];
      const phaseRows = connections.map((c) => {
        const ps = runs.filter((r) => r.client === `slm --connections ${c}`).map((r) => r.phases!);
        const tr = median(ps.map((p) => p.transferS));
        return [`--connections ${c}`, fmt(median(ps.map((p) => p.startS)), 2), fmt(median(ps.map((p) => p.resolveS)), 2), fmt(tr, 2), fmt(median(ps.map((p) => p.finishS)), 2), fmt(MB(size, tr))];
      });

      console.log(`\nPull throughput, ${size} bytes, ${reps} repetitions (MB = 10^6 bytes; wall time from spawn to exit)\n`);
      console.log(table(header, [...rows, ...refRows]));
      console.log("");
      console.log(table(phaseHeader, phaseRows));
      const best = Math.max(...connections.map((c) => median(runs.filter((r) => r.client === `slm --connections ${c}`).map((r) => MB(size, r.wallS)))));
      console.log(`\nratio slm/curl (best --connections, median): ${fmt(best / curlMed, 2)}×  (target ≥ 0.90×)`);
      const disturbed = runs.filter((r) => (r.otherCpuS ?? 0) > 0.25 * r.wallS).length;
      if (disturbed) console.log(`WARNING: other processes were busy during ${disturbed} of ${runs.length} runs (see "others' CPU s"); rerun on a quiet machine.`);
      if (cpuProfDir) console.log(`CPU profiles of the last repetition's slm runs: ${cpuProfDir}`);
      const m = machine();
      console.log(`\nmarkdown:\n\nMachine: ${m.nproc} CPUs, ${m.cpu}, ${m.ram}, node ${m.node}, ${m.kernel}, ${m.date}\n`);
      console.log(markdownTable(header, [...rows, ...refRows]));
      console.log("");
      console.log(markdownTable(phaseHeader, phaseRows));
    } finally {
      await server.close();
    }
  } finally {
    cleanup();
  }
}

await main();
