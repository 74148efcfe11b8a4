import { availableParallelism, freemem } from "node:os";
import type { Llama } from "node-llama-cpp";

/** What the user asked for; anything left out is chosen to fit the machine. */
export interface RuntimeRequest {
  threads?: number;
  contextSize?: number;
  batchSize?: number;
  gpuLayers?: number;
}

export interface ChosenSettings {
  threads: number;
  /** A fixed size, or a ceiling that node-llama-cpp lowers to fit free memory. */
  contextSize: number | { max: number; min: number };
  batchSize?: number;
  gpuLayers: number | "auto";
  /** One line per choice, shown with --verbose. */
  reasons: string[];
}

/**
 * Threads: one per core node-llama-cpp counts for math (physical cores), never more than this process
 * may use: on a 2-core machine node-llama-cpp's default of 4 threads made generation ~300x slower
 * (DESIGN §3). Context: the model's training length capped at 4096 and fitted to memory.
 */
export function chooseSettings(llama: Llama, trainContext: number | undefined, req: RuntimeRequest): ChosenSettings {
  const reasons: string[] = [];
  const cores = availableParallelism();
  const fromEnv = Number(process.env.SLM_THREADS);
  const envThreads = Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : undefined;
  let threads = req.threads ?? envThreads ?? Math.max(1, Math.min(llama.cpuMathCores, cores));
  if (req.threads) reasons.push(`threads ${threads} (--threads)`);
  else if (envThreads) reasons.push(`threads ${threads} (SLM_THREADS)`);
  else reasons.push(`threads ${threads}: ${llama.cpuMathCores} math cores, ${cores} usable by this process`);
  if (threads > cores) reasons.push(`warning: ${threads} threads on ${cores} cores oversubscribes the CPU and is usually much slower`);
  threads = Math.max(1, threads);

  const train = trainContext ?? 4096;
  let contextSize: ChosenSettings["contextSize"];
  if (req.contextSize) {
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
  return { threads, contextSize, batchSize: req.batchSize, gpuLayers, reasons };
}
