import type { Command } from "commander";
import { formatBytes } from "../core/format.js";
import { action } from "./action.js";

export function register(program: Command): void {
  program
    .command("rm")
    .alias("remove")
    .description("Unregister models and delete their files (blobs still used by another model or snapshot are kept)")
    .argument("<models...>", "registered names (see `slm list`)")
    .action(
      action(async (ctx, names: string[]) => {
        const { removeModel } = await import("../backends/store/remove.js");
        const { resolveModel } = await import("../backends/store/resolve.js");
        const render = await ctx.renderer(false);
        const results = [];
        for (const n of names) {
          const entry = resolveModel(n);
          results.push(await removeModel(entry.name));
        }
        render.result(results, results.map((r) => `removed ${r.model.name}${r.freedBytes ? ` (freed ${formatBytes(r.freedBytes)})` : ""}`).join("\n"));
      }),
    );
}
