import { type Command, Option } from "commander";
import type { BuildResult } from "../backends/llamacpp/build.js";
import type { GpuVariant, LlamaCppTool } from "../backends/llamacpp/tools.js";
import { CancelledError, UsageError } from "../core/errors.js";
import type { EventSink } from "../core/events.js";
import { formatDuration } from "../core/format.js";
import type { Renderer } from "../ui/render.js";
import { type CommandContext, action, positiveInt } from "./action.js";

export interface SetupFlags {
  cuda?: boolean;
  vulkan?: boolean;
  cpu?: boolean;
  qlora?: boolean;
  force?: boolean;
  jobs?: number;
}

const COMPONENTS = ["llama.cpp", "python", "engine", "onnx"] as const;

export function register(program: Command): void {
  program
    .command("setup")
    .description("Install what later commands need: llama.cpp's tools (quantize, perplexity…), the Python stack for fine-tuning and convert, an inference engine compiled for this machine, or onnxruntime-node for ONNX models")
    .argument("<component>", `what to set up: ${COMPONENTS.join(", ")}`)
    .addOption(new Option("--cuda", "llama.cpp, engine: build the CUDA variant (needs the CUDA toolkit); python: CUDA torch (default where nvidia-smi works)").conflicts(["vulkan", "cpu"]))
    .addOption(new Option("--vulkan", "llama.cpp, engine: build the Vulkan variant (needs the Vulkan SDK)").conflicts(["cuda", "cpu"]))
    .addOption(new Option("--cpu", "python: CPU-only torch (default without an NVIDIA GPU)").conflicts(["cuda", "vulkan"]))
    .option("--qlora", "python: also install bitsandbytes, for slm finetune --qlora")
    .option("--force", "build or install again even when it is already there")
    .option("-j, --jobs <n>", "llama.cpp: parallel compile jobs (default: every core)", positiveInt("--jobs"))
    .addHelpText(
      "after",
      `
llama.cpp's tools are found on PATH or in SLM_LLAMA_CPP_DIR; otherwise this builds them from the
llama.cpp source that node-llama-cpp ships (the exact release of its native binding), with cmake and a
C++ compiler, into $SLM_HOME/llama.cpp/<release>/ (about 10 minutes on 2 cores, once). Nothing is
downloaded. A failed or interrupted build leaves nothing behind; a second slm waits for the first.

python creates $SLM_HOME/venv (with uv when it is on PATH, else python3 -m venv) and installs the
pinned torch, transformers, peft, accelerate, safetensors and sentencepiece from PyPI, with onnx,
onnxruntime and onnx-ir for slm export --format onnx, plus the gguf package of that same llama.cpp
source. It needs the network; a failed or interrupted setup leaves
nothing behind. SLM_PYTHON, when set, is used instead of the venv by every command.

engine compiles node-llama-cpp's binding (what run, chat, serve, bench and eval use) from the same
llama.cpp source for this machine's CPU (or --cuda/--vulkan), about 8 minutes on 2 cores. Its prebuilt
CPU binaries are generic: F16 prompt processing measured 2x faster once built natively.

onnx installs onnxruntime-node (the version slm is tested with) into $SLM_HOME/onnx from the npm
registry, for installs that do not carry it (\`npm i -g\`; a clone has it as a devDependency), about
290 MB. slm runs ONNX models on its CPU execution provider for now (no --cuda). Only run, chat,
serve, eval and bench of an ONNX model load it.

Examples:
  slm setup onnx
  slm setup llama.cpp
  slm setup llama.cpp --cuda
  slm setup python
  slm setup python --cpu
  slm setup engine`,
    )
    .action(
      action(async (ctx, component: string, flags: SetupFlags) => {
        if (!(COMPONENTS as readonly string[]).includes(component)) {
          throw new UsageError(`Unknown component "${component}".`, { hint: `slm setup knows: ${COMPONENTS.join(", ")}.` });
        }
        if (component === "engine") {
          const { setupEngineAction } = await import("./setupEngine.js");
          return setupEngineAction(ctx, flags);
        }
        if (component === "onnx") {
          const { setupOnnxAction } = await import("./setupOnnx.js");
          return setupOnnxAction(ctx, flags);
        }
        if (component === "python") {
          const { setupPythonAction } = await import("./setupPython.js");
          return setupPythonAction(ctx, flags);
        }
        if (flags.cpu || flags.qlora) throw new UsageError(`${flags.cpu ? "--cpu" : "--qlora"} is for \`slm setup python\`; llama.cpp's default build is the CPU one.`);
        const variant: GpuVariant = flags.cuda ? "cuda" : flags.vulkan ? "vulkan" : "cpu";
        const { findTools, LLAMA_CPP_TOOLS, toolVersion } = await import("../backends/llamacpp/tools.js");
        // Tools already on PATH or in SLM_LLAMA_CPP_DIR are used as they are, unless a GPU build or a rebuild is asked for.
        if (variant === "cpu" && !flags.force) {
          const found = await findTools(LLAMA_CPP_TOOLS);
          if (found.every((t) => t.path)) {
            const render = await ctx.renderer(false);
            const version = await toolVersion(found[0]!.path!, ctx.signal);
            const tools = Object.fromEntries(found.map((t) => [t.name, t.path!]));
            const lines = found.map((t) => `  ${t.name.padEnd(18)} ${t.path} (${t.origin})`);
            render.result({ built: false, version, tools }, `llama.cpp's tools are installed (${version}):\n${lines.join("\n")}\nRun with --force to build slm's own copy anyway.`);
            return;
          }
        }
        const render = await ctx.renderer();
        const r = await buildTools(ctx, render, { variant, force: flags.force, jobs: flags.jobs });
        const lines = Object.entries(r.tools).map(([n, p]) => `  ${n.padEnd(18)} ${p}`);
        const head = r.built
          ? `Built llama.cpp ${r.release}${variant === "cpu" ? "" : ` (${variant})`} in ${formatDuration(r.seconds)} (${r.manifest.version ?? "unknown version"}):`
          : `llama.cpp ${r.release}${variant === "cpu" ? "" : ` (${variant})`} is already built (${r.manifest.version ?? "unknown version"}); --force builds it again:`;
        render.result({ built: r.built, release: r.release, variant: r.variant, dir: r.dir, version: r.manifest.version, tools: r.tools, seconds: Math.round(r.seconds) }, `${head}\n${lines.join("\n")}`);
      }),
    );
}

/**
 * Builds with the live view (whose task line shows the elapsed time itself); plain output gets a line
 * with the percentage and the elapsed time every 30 s instead.
 */
async function buildTools(ctx: CommandContext, render: Renderer, o: { variant?: GpuVariant; force?: boolean; jobs?: number }): Promise<BuildResult> {
  const { buildLlamaCpp } = await import("../backends/llamacpp/build.js");
  const onEvent: TickingSink = render.mode === "plain" ? withElapsed(render.onEvent, 30_000) : render.onEvent;
  try {
    return await buildLlamaCpp(o, { signal: ctx.signal, onEvent });
  } finally {
    onEvent.stop?.();
  }
}

export type TickingSink = EventSink & { stop?: () => void };

/** Plain output of the long step `id` (a build): a line with the percentage and the elapsed time each `everyMs`, instead of progress lines. */
export function withElapsed(sink: EventSink, everyMs: number, BUILD = "llama.cpp:build"): TickingSink {
  let started: number | undefined;
  let title = "";
  let lastProgress: Parameters<EventSink>[0] | undefined;
  let timer: NodeJS.Timeout | undefined;
  const tick = () => {
    if (started === undefined) return;
    const pct = lastProgress?.type === "progress" ? ` ${lastProgress.current}%,` : "";
    sink({ type: "step", ts: Date.now(), id: BUILD, status: "start", title: `${title} —${pct} ${formatDuration((Date.now() - started) / 1000)} elapsed` });
  };
  const out: TickingSink = (e) => {
    if (e.type === "step" && e.id === BUILD && e.status === "start") {
      started = Date.now();
      title = e.title;
      timer = setInterval(tick, everyMs);
      timer.unref();
    } else if (e.type === "step" && e.id === BUILD) {
      clearInterval(timer);
      started = undefined;
    } else if (e.type === "progress" && e.id === BUILD) {
      lastProgress = e;
      return;
    }
    sink(e);
  };
  out.stop = () => clearInterval(timer);
  return out;
}

/**
 * The llama.cpp tools a command needs. Missing ones are built after asking on a terminal (or straight
 * away with --yes); without a terminal the answer is the missing-dependency error naming
 * `slm setup llama.cpp`, so scripts and CI never start a 10-minute build by surprise.
 */
export async function ensureLlamaCppTools<T extends LlamaCppTool>(ctx: CommandContext, names: readonly T[], yes: boolean): Promise<Record<T, string>> {
  const { findTools, missingToolsError } = await import("../backends/llamacpp/tools.js");
  const found = await findTools(names);
  const missing = found.filter((t) => !t.path).map((t) => t.name);
  if (missing.length === 0) return Object.fromEntries(found.map((t) => [t.name, t.path!])) as Record<T, string>;
  if (!yes) {
    const interactive = !ctx.globals.json && !!process.stdin.isTTY && !!process.stderr.isTTY;
    if (!interactive) throw missingToolsError(missing);
    const ok = await confirm(`llama.cpp's ${missing.join(", ")} ${missing.length === 1 ? "is" : "are"} not installed. Build ${missing.length === 1 ? "it" : "them"} now from the bundled source (about 10 minutes on 2 cores, once)? [y/N] `, ctx.signal);
    if (!ok) throw missingToolsError(missing);
  }
  const r = await buildTools(ctx, await ctx.renderer(), {});
  const again = await findTools(names);
  return Object.fromEntries(again.map((t) => [t.name, t.path ?? r.tools[t.name]!])) as Record<T, string>;
}

async function confirm(question: string, signal: AbortSignal): Promise<boolean> {
  const { createInterface } = await import("node:readline/promises");
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  // readline swallows Ctrl+C at a prompt; hand it to slm's interrupt handler, which aborts `signal`.
  rl.on("SIGINT", () => process.kill(process.pid, "SIGINT"));
  try {
    const answer = await rl.question(question, { signal });
    return /^y(es)?$/i.test(answer.trim());
  } catch (err) {
    // Ctrl+C at the question is a cancel, not a "no".
    if (signal.aborted) throw new CancelledError();
    throw err;
  } finally {
    rl.close();
  }
}
