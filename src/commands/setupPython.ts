import type { SetupPythonResult } from "../backends/python/setup.js";
import { UsageError } from "../core/errors.js";
import { formatDuration } from "../core/format.js";
import type { CommandContext } from "./action.js";
import type { SetupFlags } from "./setup.js";

/** `slm setup python`: flags → setupPython → a summary of what the environment holds. */
export async function setupPythonAction(ctx: CommandContext, flags: SetupFlags): Promise<void> {
  if (flags.vulkan) throw new UsageError("--vulkan is for `slm setup llama.cpp`; torch's choices are --cuda and --cpu.");
  if (flags.jobs !== undefined) throw new UsageError("--jobs is for `slm setup llama.cpp`.");
  const { setupPython } = await import("../backends/python/setup.js");
  const render = await ctx.renderer();
  const r = await setupPython({ variant: flags.cuda ? "cuda" : flags.cpu ? "cpu" : undefined, qlora: !!flags.qlora, force: !!flags.force }, { signal: ctx.signal, onEvent: render.onEvent });
  render.result(r, summary(r));
}

function summary(r: SetupPythonResult): string {
  const head = r.created
    ? `Created slm's Python environment (${r.variant === "cuda" ? "CUDA" : "CPU"} torch${r.qlora ? ", QLoRA" : ""}, ${r.installer}) in ${formatDuration(r.seconds)}:`
    : `slm's Python environment is already complete (${r.variant === "cuda" ? "CUDA" : "CPU"} torch${r.qlora ? ", QLoRA" : ""}); --force makes it again:`;
  const mods = Object.entries(r.stack.modules)
    .filter(([, m]) => !m.error)
    .map(([name, m]) => `${name} ${m.version ?? ""}`.trim());
  const t = r.stack.torch;
  const gpu = t?.gpu ? `GPU: ${t.devices.join(", ")} (CUDA ${t.cuda})` : `GPU: none seen by torch${t?.cuda ? ` (built for CUDA ${t.cuda})` : ""}`;
  return [head, `  ${r.python} (Python ${r.stack.version})`, `  ${mods.join(", ")}`, `  ${gpu}`].join("\n");
}
