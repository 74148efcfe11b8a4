import { UsageError } from "../core/errors.js";
import { formatDuration } from "../core/format.js";
import type { CommandContext } from "./action.js";
import type { SetupFlags } from "./setup.js";

/** `slm setup onnx`: onnxruntime-node for ONNX models (src/backends/onnx/install.ts says why it is not a dependency). */
export async function setupOnnxAction(ctx: CommandContext, flags: SetupFlags): Promise<void> {
  const other = flags.vulkan ? "--vulkan" : flags.cpu ? "--cpu" : flags.qlora ? "--qlora" : flags.jobs !== undefined ? "--jobs" : undefined;
  if (other) throw new UsageError(`${other} is not an option of \`slm setup onnx\`; it takes --cuda (the CUDA 12 execution provider) and --force.`);
  const { installOrt, ortPackageDir, ortStatus } = await import("../backends/onnx/install.js");
  if (!flags.force && !flags.cuda) {
    const now = await ortStatus();
    if (now.available) {
      const render = await ctx.renderer(false);
      const where = now.origin === "project" ? "slm's own node_modules" : now.dir;
      render.result({ installed: false, ...now }, `onnxruntime-node ${now.version} is already available (${where}); execution providers: ${now.providers.join(", ")}.\n--cuda adds the CUDA 12 execution provider; --force installs it again.`);
      return;
    }
  }
  const render = await ctx.renderer();
  const r = await installOrt({ cuda: flags.cuda, force: flags.force }, { signal: ctx.signal, onEvent: render.onEvent });
  const head = r.installed ? `Installed onnxruntime-node ${r.version}${r.cuda ? " with the CUDA 12 execution provider" : ""} in ${formatDuration(r.seconds)}` : `onnxruntime-node ${r.version} is already available${r.cuda ? " with the CUDA 12 execution provider" : ""}`;
  render.result({ ...r, origin: ortPackageDir()?.origin }, `${head}:\n  ${r.dir}\nrun, chat, serve, eval and bench load ONNX models with it.`);
}
