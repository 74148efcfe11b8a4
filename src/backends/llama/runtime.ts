import type { Llama } from "node-llama-cpp";
import { MissingDependencyError, UsageError } from "../../core/errors.js";

export type GpuChoice = "auto" | "off" | "cuda" | "vulkan" | "metal";
export const GPU_CHOICES: readonly GpuChoice[] = ["auto", "off", "cuda", "vulkan", "metal"];

const runtimes = new Map<GpuChoice, Promise<Llama>>();

/**
 * One node-llama-cpp instance per GPU choice and process. `build: "never"` so that asking for a GPU
 * without a prebuilt binary fails with a clear error instead of starting a long compile. `maxThreads: 0`
 * makes each context use exactly the threads slm chose for it (settings.ts), so --threads is never
 * silently capped and node-llama-cpp's default (more threads than cores here) never applies.
 */
export function getRuntime(gpu: GpuChoice = "auto", verbose = false): Promise<Llama> {
  let p = runtimes.get(gpu);
  if (!p) {
    p = (async () => {
      const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");
      try {
        return await getLlama({
          gpu: gpu === "off" ? false : gpu,
          build: "never",
          maxThreads: 0,
          logLevel: verbose ? LlamaLogLevel.warn : LlamaLogLevel.error,
          progressLogs: false,
        });
      } catch (err) {
        if (gpu !== "auto" && gpu !== "off") {
          throw new MissingDependencyError(`No ${gpu} build of llama.cpp is available to node-llama-cpp (${(err as Error).message}).`, `npx --no node-llama-cpp source download --gpu ${gpu}`, {
            hint: `Build it with \`npx --no node-llama-cpp source download --gpu ${gpu}\` (needs cmake and the ${gpu} toolkit), or use --gpu auto.`,
          });
        }
        throw err;
      }
    })();
    runtimes.set(gpu, p);
  }
  return p;
}

export function parseGpu(value: string): GpuChoice {
  if (!(GPU_CHOICES as readonly string[]).includes(value)) throw new UsageError(`--gpu must be one of ${GPU_CHOICES.join(", ")} (got "${value}").`);
  return value as GpuChoice;
}
