import { Command, CommanderError } from "commander";
import { readFileSync } from "node:fs";
import path from "node:path";
import { EXIT, SlmError, isAbort } from "./core/errors.js";
import { packageRoot } from "./core/paths.js";
import { storageErrorOf } from "./core/storage.js";
import { wrapHelp } from "./ui/helpWrap.js";

import { register as registerInfo } from "./commands/info.js";
import { register as registerList } from "./commands/list.js";
import { register as registerPull } from "./commands/pull.js";
import { register as registerRm } from "./commands/rm.js";
import { register as registerRun } from "./commands/run.js";
import { register as registerChat } from "./commands/chat.js";
import { register as registerDoctor } from "./commands/doctor.js";
import { register as registerQuantize } from "./commands/quantize.js";
import { register as registerSetup } from "./commands/setup.js";
import { register as registerServe } from "./commands/serve.js";
import { register as registerBench } from "./commands/bench.js";
import { register as registerEval } from "./commands/eval.js";
import { register as registerFinetune } from "./commands/finetune.js";
import { register as registerConvert } from "./commands/convert.js";
import { register as registerExport } from "./commands/export.js";
import { register as registerDistill } from "./commands/distill.js";
import { register as registerPrune } from "./commands/prune.js";

function version(): string {
  return (JSON.parse(readFileSync(path.join(packageRoot(), "package.json"), "utf8")) as { version: string }).version;
}

export function buildProgram(): Command {
  const program = new Command("slm")
    .description("Small language models, the whole lifecycle: pull, quantize, fine-tune, evaluate, run, chat and serve.")
    .version(version(), "-V, --version")
    .option("--json", "machine-readable output: NDJSON events on stdout, the last line a result or an error")
    .option("-v, --verbose", "more detail, and stack traces for unexpected errors")
    .option("-q, --quiet", "only results and errors")
    .option("--no-color", "no colours (also: NO_COLOR=1)")
    .showSuggestionAfterError(true)
    .addHelpText(
      "after",
      `
Models are named by a catalog alias (slm list --catalog), hf:org/repo[:QUANT], org/repo[:QUANT],
a local .gguf file, a local Hugging Face model folder, or a name registered by an earlier command.

Environment: SLM_HOME (default ~/.slm), SLM_LLAMA_CPP_DIR, SLM_PYTHON, HF_HOME, HF_HUB_CACHE, HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE.

Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 network, 5 missing dependency, 6 external tool,
7 integrity, 8 storage (cannot write: read-only, full disk), 130 cancelled.`,
    );
  program.exitOverride();
  for (const register of [registerPull, registerList, registerInfo, registerRm, registerRun, registerChat, registerDoctor, registerQuantize, registerSetup, registerServe, registerBench, registerEval, registerFinetune, registerDistill, registerConvert, registerExport, registerPrune]) register(program);
  for (const cmd of program.commands) cmd.exitOverride();
  fitHelpToTerminal(program);
  return program;
}

/** Help text added to commands is prose and examples of any length: wrapped here, for every command, to the terminal (80 columns when not one). */
function fitHelpToTerminal(cmd: Command): void {
  const width = () => (process.stdout.isTTY && process.stdout.columns ? process.stdout.columns : 80);
  cmd.configureOutput({ writeOut: (s) => process.stdout.write(wrapHelp(s, width())) });
  for (const sub of cmd.commands) fitHelpToTerminal(sub);
}

function wantsJson(argv: string[]): boolean {
  return argv.includes("--json");
}

/** The one place that turns errors into messages and exit codes. */
function report(err: unknown, argv: string[]): number {
  const verbose = argv.includes("--verbose") || argv.includes("-v");
  if (err instanceof CommanderError) {
    if (err.code === "commander.helpDisplayed" || err.code === "commander.version" || err.code === "commander.help") return 0;
    // commander already printed its message to stderr.
    if (wantsJson(argv)) process.stdout.write(JSON.stringify({ type: "error", ts: Date.now(), error: { name: "UsageError", message: err.message.replace(/^error: /, ""), exitCode: EXIT.usage } }) + "\n");
    return EXIT.usage;
  }
  // A read-only, misplaced or full disk is the user's to fix, whichever command met it: say where and how.
  const slm = err instanceof SlmError ? err : (storageErrorOf(err) ?? (isAbort(err) ? new SlmError("Cancelled.", { exitCode: EXIT.cancelled }) : undefined));
  const exitCode = slm?.exitCode ?? EXIT.generic;
  const message = slm ? slm.message : `Unexpected error: ${err instanceof Error ? err.message : String(err)}`;
  const hint = slm?.hint ?? (slm ? undefined : "Run again with --verbose for details, and please report it.");
  if (wantsJson(argv)) {
    process.stdout.write(JSON.stringify({ type: "error", ts: Date.now(), error: { name: slm?.name ?? "Error", message, exitCode, hint } }) + "\n");
  } else {
    const color = process.stderr.isTTY && !argv.includes("--no-color") && !process.env.NO_COLOR;
    process.stderr.write(`${color ? "\x1b[31merror:\x1b[0m" : "error:"} ${message}\n${hint ? `hint: ${hint}\n` : ""}`);
  }
  if (verbose && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
  return exitCode;
}

/**
 * `slm … | head` closes the pipe while slm still writes: stop quietly then, as Unix tools do, instead of
 * node's unhandled EPIPE stack trace (nothing is lost: the reader asked for no more).
 */
function exitQuietlyOnClosedStdout(): void {
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw err;
  });
}

export async function main(argv: string[]): Promise<void> {
  exitQuietlyOnClosedStdout();
  let code = 0;
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    code = report(err, argv.slice(2));
  }
  process.exitCode = code;
}
