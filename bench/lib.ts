/**
 * Shared helpers for the benchmarks in bench/: statistics, a plain-text table, the machine's
 * description, and CPU accounting of child processes (from /proc, Linux only; elsewhere it reads 0).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const BIN = path.join(ROOT, "bin", "slm.js");

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Nearest-rank percentile (p in 0..100). */
export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export function table(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

/** The same table as GitHub markdown, for pasting into docs/benchmarks.md. */
export function markdownTable(header: string[], rows: string[][]): string {
  return [`| ${header.join(" | ")} |`, `|${header.map((_, i) => (i === 0 ? "---" : "---:")).join("|")}|`, ...rows.map((r) => `| ${r.join(" | ")} |`)].join("\n");
}

export function machine(): Record<string, string> {
  let cpuModel = cpus()[0]?.model ?? "unknown";
  if (existsSync("/proc/cpuinfo")) {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"));
    if (m) cpuModel = m[1]!.trim();
  }
  let nproc = String(cpus().length);
  try {
    nproc = execFileSync("nproc", { encoding: "utf8" }).trim();
  } catch {
    // not coreutils: keep os.cpus()
  }
  let kernel = "";
  try {
    kernel = execFileSync("uname", ["-sr"], { encoding: "utf8" }).trim();
  } catch {
    // ignore
  }
  return {
    date: new Date().toISOString(),
    nproc,
    cpu: cpuModel,
    ram: `${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    node: process.version,
    kernel,
  };
}

export function printMachine(): void {
  const m = machine();
  console.log(`machine: ${m.nproc} CPUs (nproc), ${m.cpu}, ${m.ram} RAM, node ${m.node}, ${m.kernel}, ${m.date}`);
}

const TICKS = 100; // USER_HZ on Linux

/** user+sys CPU seconds of this process's reaped children (cutime + cstime), from /proc/self/stat. */
export function childrenCpuSeconds(): number {
  return procCpu("/proc/self/stat", 16, 17);
}

/** user+sys CPU seconds of a running process. */
export function processCpuSeconds(pid: number): number {
  return procCpu(`/proc/${pid}/stat`, 14, 15);
}

/** Sum of two 1-based fields of a /proc stat file (man 5 proc: 14 utime, 15 stime, 16 cutime, 17 cstime), in seconds. */
function procCpu(file: string, a: number, b: number): number {
  try {
    const text = readFileSync(file, "utf8");
    // Field 2 (comm) may hold spaces; the rest follows the last ")".
    const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
    // rest[0] is field 3, so field n is rest[n - 3].
    return (Number(rest[a - 3]) + Number(rest[b - 3])) / TICKS;
  } catch {
    return 0;
  }
}

/**
 * Machine-wide CPU seconds from /proc/stat: busy (everything but idle and iowait) and steal (time the
 * hypervisor gave to other guests). Subtracting what the benchmark's own processes used from `busy`
 * gives what other processes did meanwhile: a shared machine disturbs the figures, so the benches report it.
 */
export function machineCpuSeconds(): { busy: number; steal: number } {
  try {
    const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = f;
    return { busy: (user + nice + system + irq + softirq + steal) / TICKS, steal: steal / TICKS };
  } catch {
    return { busy: 0, steal: 0 };
  }
}

export function fmt(n: number, digits = 0): string {
  return n.toFixed(digits);
}

/**
 * Runs a command to completion and times it on the wall clock and in CPU seconds (user + system of the
 * command and its children), with the machine's load: the 1-minute
 * load average before it and the cores' worth of CPU other processes used while it ran (the machine's
 * busy time minus this process's reaped children's). Throws with the output's tail on a non-zero exit.
 */
export function runMeasured(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): { stdout: string; stderr: string; wall: number; cpu: number; others: number; load: number } {
  const load = loadavg()[0]!;
  const busy0 = machineCpuSeconds().busy;
  const own0 = childrenCpuSeconds();
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 64 << 20, env });
  const wall = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}):\n${(r.stderr ?? "").slice(-2000)}\n${(r.stdout ?? "").slice(-2000)}`);
  const cpu = childrenCpuSeconds() - own0;
  const others = Math.max(0, machineCpuSeconds().busy - busy0 - cpu) / wall;
  return { stdout: r.stdout, stderr: r.stderr, wall, cpu, others, load };
}

/** The value after `--name` on the command line, else `fallback`. */
export function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

/** Runs a bench's main: a failure prints its message (no stack) and exits 1. */
export function runBench(main: () => Promise<void>): void {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  });
}
