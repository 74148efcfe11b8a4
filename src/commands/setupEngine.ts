import { UsageError } from "../core/errors.js";
import { formatDuration } from "../core/format.js";
import type { CommandContext } from "./action.js";
import { type SetupFlags, type TickingSink, withElapsed } from "./setup.js";

/** `slm setup engine`: node-llama-cpp's binding built for this machine (src/backends/llama/engine.ts says why). */
export async function setupEngineAction(ctx: CommandContext, flags: SetupFlags): Promise<void> {
  if (flags.cpu || flags.qlora || flags.jobs !== undefined) {
    throw new UsageError(`${flags.cpu ? "--cpu" : flags.qlora ? "--qlora" : "--jobs"} is not an option of \`slm setup engine\`; it builds for the CPU unless --cuda or --vulkan is given.`);
  }
  const gpu = flags.cuda ? "cuda" : flags.vulkan ? "vulkan" : "cpu";
  const { buildEngine, engineInfo } = await import("../backends/llama/engine.js");
  if (!flags.force) {
    const now = await engineInfo(gpu === "cpu" ? "off" : gpu).catch(() => undefined);
    if (now?.buildType === "localBuild") {
      const render = await ctx.renderer(false);
      render.result({ built: false, gpu, engine: now }, `The inference engine is already built for this machine (llama.cpp ${now.release}, ${now.gpu || "CPU"}); --force builds it again.`);
      return;
    }
  }
  const render = await ctx.renderer();
  const onEvent: TickingSink = render.mode === "plain" ? withElapsed(render.onEvent, 30_000, "engine:build") : render.onEvent;
  try {
    const r = await buildEngine({ gpu }, { signal: ctx.signal, onEvent });
    render.result({ built: true, gpu, seconds: Math.round(r.seconds), engine: r.engine }, `Built the inference engine for this machine in ${formatDuration(r.seconds)} (llama.cpp ${r.engine.release}, ${r.engine.gpu || "CPU"}); run, chat, serve, bench and eval use it from now on.`);
  } finally {
    onEvent.stop?.();
  }
}
