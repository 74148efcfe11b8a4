import { readFileSync } from "node:fs";
import { availableParallelism, freemem } from "node:os";
import type { Llama } from "node-llama-cpp";

/** What the user asked for; anything left out is chosen to fit the machine. */
export interface RuntimeRequest {
  threads?: number;
  contextSize?: number;
  batchSize?: number;
  gpuLayers?: number;
  /**
   * Cap `contextSize` at the model's training length, with a warning (run, chat, serve: their --ctx).
   * Off for measurements (bench, perplexity), which may go past it as llama.cpp's tools do.
   */
  capContextAtTraining?: boolean;
}

export interface ChosenSettings {
  threads: number;
  /** A fixed size, or a ceiling that node-llama-cpp lowers to fit free memory. */
  contextSize: number | { max: number; min: number };
  batchSize?: number;
  gpuLayers: number | "auto";
  /** One line per choice, shown with --verbose. */
  reasons: string[];
  /** What the user asked for and did not get, shown always. */
  warnings: string[];
}

/** CPU time in clock ticks (USER_HZ, 100 on Linux): the whole machine's busy time and this process's. */
interface CpuSample {
  at: number;
  busy: number;
  self: number;
}

function sampleCpu(): CpuSample | undefined {
  try {
    // user nice system idle iowait irq softirq steal: steal counts as busy (another VM had the core).
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
    const stat = readFileSync("/proc/self/stat", "utf8");
    // Fields 14–17: utime and stime of all this process's threads, cutime and cstime of its finished
    // children (node-llama-cpp tests its binary in a child process while loading). Field 2 may hold
    // spaces, so count after ")".
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const self = [11, 12, 13, 14].reduce((sum, i) => sum + Number(rest[i]), 0);
    return { at: performance.now(), busy: user + nice + system + irq + softirq + steal, self };
  } catch {
    return undefined; // not Linux
  }
}

// The window starts when this module loads: before the native runtime and the model, which take
// hundreds of milliseconds, so by chooseSettings() there is enough to measure.
let cpuBaseline = sampleCpu();
let lastOthers: number | undefined;

/**
 * Cores' worth of CPU that other processes used since the last call (or since this module loaded):
 * the machine's busy time minus this process's own, over the wall time. Undefined where /proc is
 * missing. A window under 200 ms is too coarse (10 ms ticks), so the previous estimate stands.
 */
export function otherProcessesCores(): number | undefined {
  const now = sampleCpu();
  if (!now || !cpuBaseline) return undefined;
  const seconds = (now.at - cpuBaseline.at) / 1000;
  if (seconds < 0.2) return lastOthers;
  lastOthers = Math.max(0, now.busy - cpuBaseline.busy - (now.self - cpuBaseline.self)) / 100 / seconds;
  cpuBaseline = now;
  return lastOthers;
}

/**
 * Threads: one per core node-llama-cpp counts for math (physical cores), never more than this process
 * may use: on a 2-core machine node-llama-cpp's default of 4 threads made generation ~300x slower
 * (DESIGN §3). Nor more than the cores other processes leave free: llama.cpp's threads meet at a
 * spinning barrier hundreds of times per token, so one descheduled thread stalls the rest. With another
 * process busy on ~1 of the 2 cores here, 2 threads generated 2.5–9 tokens/s and 1 thread 23–25 on a
 * SmolLM2-135M-shaped Q8_0 (docs/benchmarks.md); on the idle machine 2 threads process prompts ~1.6×
 * faster than 1. Rounding leans to fewer threads (free cores + 0.25, down), because too many costs
 * 10× while too few costs at most 2×. Context: the model's training length capped at 4096 and fitted
 * to memory.
 */
export function chooseSettings(llama: Llama, trainContext: number | undefined, req: RuntimeRequest): ChosenSettings {
  const reasons: string[] = [];
  const cores = availableParallelism();
  const fromEnv = Number(process.env.SLM_THREADS);
  const envThreads = Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : undefined;
  const others = (req.threads ?? envThreads) !== undefined ? undefined : otherProcessesCores();
  const free = others === undefined ? cores : Math.floor(cores - others + 0.25);
  let threads = req.threads ?? envThreads ?? Math.max(1, Math.min(llama.cpuMathCores, cores, free));
  if (req.threads) reasons.push(`threads ${threads} (--threads)`);
  else if (envThreads) reasons.push(`threads ${threads} (SLM_THREADS)`);
  else reasons.push(`threads ${threads}: ${llama.cpuMathCores} math cores, ${cores} usable by this process${others === undefined ? "" : `, other processes busy on ${others.toFixed(2)} cores`}`);
  if (threads > cores) reasons.push(`warning: ${threads} threads on ${cores} cores oversubscribes the CPU and is usually much slower`);
  threads = Math.max(1, threads);

  const train = trainContext ?? 4096;
  const warnings: string[] = [];
  let contextSize: ChosenSettings["contextSize"];
  if (req.contextSize && req.capContextAtTraining && trainContext !== undefined && req.contextSize > trainContext) {
    // Positions past the training length are ones the model never saw; llama.cpp would still allocate
    // the whole KV cache for them (999999 tokens: gigabytes, for nothing).
    contextSize = trainContext;
    warnings.push(`--ctx ${req.contextSize} is more than the model was trained on: using its ${trainContext} tokens.`);
    reasons.push(`context ${trainContext} (--ctx ${req.contextSize} capped at the training length)`);
  } else if (req.contextSize) {
    contextSize = req.contextSize;
    reasons.push(`context ${req.contextSize} (--ctx)`);
  } else {
    const max = Math.min(train, 4096);
    contextSize = { max, min: Math.min(max, 256) };
    reasons.push(`context up to ${max} (model trained on ${train}; fitted to ${(freemem() / 1e9).toFixed(1)} GB free memory)`);
  }
  const gpuLayers = req.gpuLayers ?? (llama.gpu ? "auto" : 0);
  reasons.push(llama.gpu ? `gpu ${llama.gpu}, layers ${gpuLayers}` : "gpu none: CPU inference");
  if (req.batchSize) reasons.push(`batch ${req.batchSize} (--batch)`);
  return { threads, contextSize, batchSize: req.batchSize, gpuLayers, reasons, warnings };
}
