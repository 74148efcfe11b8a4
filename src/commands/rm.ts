import type { Command } from "commander";
import { UsageError } from "../core/errors.js";
import { formatBytes } from "../core/format.js";
import type { Removed, RemoveResult } from "../backends/store/remove.js";
import { action } from "./action.js";

export function register(program: Command): void {
  program
    .command("rm")
    .alias("remove")
    .description("Remove models, unfinished downloads and abandoned fine-tune runs (files another model uses are kept)")
    .argument("[names...]", "registered models, repositories with an unfinished pull, or abandoned runs (see `slm list`)")
    .option("--leftovers", "also remove every unfinished download and abandoned fine-tune run")
    .action(
      action(async (ctx, names: string[], flags: { leftovers?: boolean }) => {
        if (names.length === 0 && !flags.leftovers) throw new UsageError("Name what to remove, or give --leftovers.", { hint: "`slm list` shows the models and what interrupted pulls and fine-tunes left." });
        const { removeAll } = await import("../backends/store/remove.js");
        const render = await ctx.renderer(false);
        const r = await removeAll(names, { leftovers: flags.leftovers });
        render.result(r, summary(r));
      }),
    );
}

const WHAT: Record<Removed["kind"], string> = { model: "removed", download: "discarded the unfinished download of", run: "discarded the fine-tune run" };

function summary(r: RemoveResult): string {
  if (r.removed.length === 0) return "Nothing to remove: no unfinished downloads or abandoned fine-tune runs.";
  const lines = r.removed.map((x) => {
    const kept = x.kept.length > 0 ? `; kept ${x.kept.length} file${x.kept.length === 1 ? "" : "s"} still used by ${[...new Set(x.kept.flatMap((k) => k.usedBy))].join(", ")}` : "";
    const runs = (x.runFolders ?? []).map((d) => `\n  its fine-tune run folder stays: ${d} (\`slm rm ${d.split(/[\\/]/).pop()}\` discards it)`).join("");
    return `${WHAT[x.kind]} ${x.name} (freed ${formatBytes(x.freedBytes)}${kept})${runs}`;
  });
  if (r.removed.length > 1) lines.push(`freed ${formatBytes(r.freedBytes)} in all`);
  return lines.join("\n");
}
