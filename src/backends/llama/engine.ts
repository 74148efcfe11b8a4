import { constants as fsConstants } from "node:fs";
import { access } from "node:fs/promises";
import path from "node:path";
import { SlmError } from "../../core/errors.js";
import { type BackendContext, emit } from "../../core/events.js";
import { exec } from "../../core/exec.js";
import { withLock } from "../../core/lock.js";
import { slmPaths } from "../../core/paths.js";
import { findToolchain, parseBuildProgress } from "../llamacpp/build.js";
import type { GpuVariant } from "../llamacpp/tools.js";
import { nodeLlamaCppDir } from "../llamacpp/source.js";
import type { GpuChoice } from "./runtime.js";

/**
 * node-llama-cpp's native engine, built for this machine.
 *
 * Its prebuilt Linux x64 binaries are compiled for a few CPU generations and the best one is chosen at
 * run time (here: "haswell", AVX2). Measured on the 2-core AMD EPYC dev machine (docs/benchmarks.md,
 * "Inference"): F16 prompt processing ran at ~110 tokens/s on the prebuilt binary against ~230 for
 * llama-bench built natively from the same llama.cpp source, and at ~210–225 once node-llama-cpp's own
 * binding was built natively too. Generation (memory-bound) was the same either way.
 *
 * So `slm setup engine` asks node-llama-cpp to build its binding from the llama.cpp source it ships
 * (`source download` clones its bundled git release, no network), which it then prefers over its
 * prebuilt binaries ("localBuild"). The build lands in node-llama-cpp's own folder because that is the
 * only place node-llama-cpp looks for it.
 */

export type EngineGpu = GpuVariant;

export interface EngineInfo {
  /** "localBuild" after `slm setup engine`, "prebuilt" otherwise. */
  buildType: "localBuild" | "prebuilt";
  /** The GPU backend node-llama-cpp loaded, or false for CPU only. */
  gpu: string | false;
  release: string;
}

export interface EngineBuildResult {
  gpu: EngineGpu;
  seconds: number;
  engine: EngineInfo;
}

/** Which engine node-llama-cpp loads for `gpu` (without building anything). */
export async function engineInfo(gpu: GpuChoice = "auto"): Promise<EngineInfo> {
  const { getRuntime } = await import("./runtime.js");
  const llama = await getRuntime(gpu);
  return { buildType: llama.buildType, gpu: llama.gpu, release: llama.llamaCppRelease.release };
}

function cliPath(): string {
  return path.join(nodeLlamaCppDir(), "dist", "cli", "cli.js");
}

/** Builds node-llama-cpp's binding natively; a second slm waits for the first. */
export async function buildEngine(o: { gpu: EngineGpu }, ctx: BackendContext = {}): Promise<EngineBuildResult> {
  const dir = nodeLlamaCppDir();
  const llamaDir = path.join(dir, "llama");
  try {
    await access(llamaDir, fsConstants.W_OK);
  } catch {
    throw new SlmError(`node-llama-cpp's folder ${llamaDir} is not writable, and it only loads engines built there.`, {
      hint: "Run `slm setup engine` as the user that installed slm (or with sudo for a global install).",
    });
  }
  // cmake, git, a compiler (and nvcc or glslc) are checked first, each with its own fix, before anything runs.
  await findToolchain(o.gpu, process.env);
  const started = Date.now();
  const title = `Building the inference engine for this machine (${o.gpu})`;
  await withLock(path.join(slmPaths().home, "engine"), async () => {
    emit(ctx.onEvent, { type: "step", id: "engine:build", status: "start", title });
    let last = 0;
    try {
      await exec(process.execPath, [cliPath(), "source", "download", "--gpu", o.gpu === "cpu" ? "false" : o.gpu, "--noUsageExample"], {
        cwd: dir,
        signal: ctx.signal,
        label: "node-llama-cpp source download",
        buffer: false,
        killTree: true,
        tailLines: 40,
        onLine: (line) => {
          const f = parseBuildProgress(line.trim());
          if (f !== undefined && f * 100 > last) {
            last = Math.floor(f * 100);
            const elapsed = (Date.now() - started) / 1000;
            emit(ctx.onEvent, { type: "progress", id: "engine:build", unit: "percent", current: last, total: 100, rate: elapsed > 5 ? last / elapsed : undefined });
          } else if (line.trim() !== "") emit(ctx.onEvent, { type: "log", level: "debug", message: line });
        },
      });
    } catch (err) {
      // node-llama-cpp marks a finished build with buildDone.status and never loads an unfinished one.
      emit(ctx.onEvent, { type: "step", id: "engine:build", status: "fail", title });
      throw err;
    }
    emit(ctx.onEvent, { type: "step", id: "engine:build", status: "done", title });
  });
  const engine = await engineInfo(o.gpu === "cpu" ? "off" : o.gpu);
  return { gpu: o.gpu, seconds: (Date.now() - started) / 1000, engine };
}
