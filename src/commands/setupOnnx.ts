import { UsageError } from "../core/errors.js";
import { formatDuration } from "../core/format.js";
import type { CommandContext } from "./action.js";
import type { SetupFlags } from "./setup.js";

/** `slm setup onnx`: onnxruntime-node for ONNX models (src/backends/onnx/install.ts says why it is not a dependency). */
export async function setupOnnxAction(ctx: CommandContext, flags: SetupFlags): Promise<void> {
  // No --cuda: slm runs ONNX models on onnxruntime's CPU provider only, so a CUDA provider would go unused.
  if (flags.cuda) throw new UsageError("--cuda is not an option of `slm setup onnx`: slm runs ONNX models on onnxruntime's CPU execution provider for now.", { hint: "For a GPU, run the model's GGUF build (slm setup engine --cuda)." });
  const other = flags.vulkan ? "--vulkan" : flags.cpu ? "--cpu" : flags.qlora ? "--qlora" : flags.jobs !== undefined ? "--jobs" : undefined;
  if (other) throw new UsageError(`${other} is not an option of \`slm setup onnx\`; it takes --force.`);
  const { installOrt, ortPackageDir, ortStatus } = await import("../backends/onnx/install.js");
  if (!flags.force) {
    const now = await ortStatus();
    if (now.available) {
      const render = await ctx.renderer(false);
      const where = now.origin === "project" ? "slm's own node_modules" : now.dir;
      render.result({ installed: false, ...now }, `onnxruntime-node ${now.version} is already available (${where}); execution providers: ${now.providers.join(", ")}.\nslm runs ONNX models on the CPU for now; --force installs it again.`);
      return;
    }
  }
  const render = await ctx.renderer();
  const r = await installOrt({ force: flags.force }, { signal: ctx.signal, onEvent: render.onEvent });
  const head = r.installed ? `Installed onnxruntime-node ${r.version} in ${formatDuration(r.seconds)}` : `onnxruntime-node ${r.version} is already available`;
  render.result({ ...r, origin: ortPackageDir()?.origin }, `${head}:\n  ${r.dir}\nrun, chat, serve, eval and bench load ONNX models with it, on the CPU.`);
}
