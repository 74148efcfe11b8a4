import { type Command, InvalidArgumentError, Option } from "commander";
import type { Keep } from "../backends/quantize/sweep.js";
import { UsageError } from "../core/errors.js";
import { type CommandContext, collect, positiveInt } from "./action.js";
import type { QuantizeFlags } from "./quantize.js";
import { ensureLlamaCppTools } from "./setup.js";

/** `slm quantize --sweep [TYPES…]` and the flags only a sweep takes (see docs/quantize.md, "Sweep"). */
export interface SweepFlags {
  sweep?: true | string[];
  text?: string;
  task?: string[];
  limit?: number;
  parallel?: number;
  maxKld?: number;
  maxDrop?: number;
  keep?: Keep;
  report?: string;
}

const SWEEP_ONLY: [keyof SweepFlags, string][] = [
  ["text", "--text"],
  ["task", "--task"],
  ["limit", "--limit"],
  ["parallel", "--parallel"],
  ["maxKld", "--max-kld"],
  ["maxDrop", "--max-drop"],
  ["keep", "--keep"],
  ["report", "--report"],
];

function number(name: string, check: (n: number) => boolean, what: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === "" || !Number.isFinite(n) || !check(n)) throw new InvalidArgumentError(`${name} must be ${what}.`);
    return n;
  };
}

export function addSweepOptions(cmd: Command): void {
  cmd
    .option("--sweep [types...]", "llamacpp: make several types and compare each with the source (default Q8_0 Q6_K Q5_K_M Q4_K_M Q3_K_M Q2_K)")
    .option("--text <file>", "with --sweep: text the KLD and perplexity are measured on (default: the --calibration text)")
    .option("--task <file.jsonl>", "with --sweep: also score each type on these questions (repeatable; see docs/eval.md)", collect)
    .option("--limit <n>", "with --sweep: score only the first N questions of each task", positiveInt("--limit"))
    .option("--parallel <n>", "with --sweep: questions scored at once per model, as slm eval's --parallel (default 8)", positiveInt("--parallel"))
    .option("--max-kld <x>", "with --sweep: recommend types whose mean KLD is under this (default 0.05)", number("--max-kld", (n) => n > 0, "a positive number"))
    .option("--max-drop <x>", "with --sweep: …or whose task scores are at most this far below the source's (absolute, default 0.02)", number("--max-drop", (n) => n >= 0 && n <= 1, "a number from 0 to 1"))
    .addOption(new Option("--keep <which>", "with --sweep: keep every type (all, default) or only the recommended one (best)").choices(["all", "best"]))
    .option("--report <file>", "with --sweep: also write the table as FILE.md or FILE.html");
}

/** Sweep-only flags without --sweep are a usage error, never silently ignored. */
export function rejectSweepFlags(flags: SweepFlags): void {
  const given = SWEEP_ONLY.filter(([k]) => flags[k] !== undefined).map(([, f]) => f);
  if (given.length > 0) throw new UsageError(`${given.join(", ")} ${given.length > 1 ? "work" : "works"} only with --sweep.`, { hint: "slm quantize MODEL --sweep [TYPES…] --text FILE compares several types; see `slm quantize --help`." });
}

export async function sweepCommand(ctx: CommandContext, model: string, flags: QuantizeFlags & SweepFlags): Promise<void> {
  const [{ planSweep, runSweep }, { sweepText, writeSweepReport }, { reportFormat }] = await Promise.all([
    import("../backends/quantize/sweep.js"),
    import("../backends/quantize/sweepTable.js"),
    import("../backends/eval/report.js"),
  ]);
  const { sweep, yes, bits, type, out, text, task, limit, parallel, maxKld, maxDrop, keep, report, ...quantize } = flags;
  if (type !== undefined || bits !== undefined) throw new UsageError("--sweep makes the types listed after it: give them there instead of --type / --bits.", { hint: "e.g. slm quantize MODEL --sweep Q8_0 Q4_K_M --text FILE" });
  if (report && !reportFormat(report)) throw new UsageError(`--report takes a .md or .html file name (got ${report}).`);
  // Everything that needs no tool (types, text, tasks, source) is checked first: a typo never waits for a build.
  const plan = await planSweep({ ...quantize, ref: model, types: sweep === true || sweep === undefined ? [] : sweep, prefix: out, text, tasks: task, limit, parallel, maxKld, maxDrop, keep });
  const tools = await ensureLlamaCppTools(ctx, plan.quantize.tools, !!yes);
  const render = await ctx.renderer();
  const r = await runSweep(plan, { tools, verbose: ctx.globals.verbose }, { signal: ctx.signal, onEvent: render.onEvent });
  const written = report ? await writeSweepReport(r, report) : undefined;
  render.result({ ...r, report: written?.path }, sweepText(r, written?.path));
}
