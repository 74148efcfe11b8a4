import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { CancelledError, ExternalError, NotFoundError, UsageError } from "../../core/errors.js";
import { emit, type BackendContext } from "../../core/events.js";
import { exec } from "../../core/exec.js";
import { packageRoot } from "../../core/paths.js";
import { type PythonEnv, resolvePython } from "./env.js";
import { parseEventLine } from "./events.js";

export interface RecipeOptions {
  /** A file name in the package's recipes/ folder (e.g. "finetune_lora.py"), or an absolute path. */
  recipe: string;
  /** Written as JSON to a temporary file, passed as `--config FILE`. */
  config: object;
  python?: PythonEnv;
  env?: Record<string, string>;
  cwd?: string;
  /** How long after Ctrl+C the recipe may take to checkpoint and exit before SIGKILL (default 60 s). */
  graceMs?: number;
}

/** slm_recipes.errors.ConfigError's exit code: the recipe says in one line on stderr what it refuses. */
const RECIPE_USAGE_EXIT = 2;
/** How much of the recipe's stderr an error carries. */
const STDERR_TAIL_CHARS = 4096;
/** After Ctrl+C a recipe finishes its step and writes a checkpoint; a big model may need a while. */
export const RECIPE_GRACE_MS = 60_000;

export function recipePath(recipe: string): string {
  return path.isAbsolute(recipe) ? recipe : path.join(packageRoot(), "recipes", recipe);
}

/**
 * Runs a Python recipe: one JSON config in, NDJSON events of slm's vocabulary out on stdout (forwarded
 * to ctx.onEvent as they arrive), logs on stderr (forwarded as debug logs, and the tail kept for the
 * error). Returns the `data` of the last `result` event; result events are not forwarded, since the
 * command renders its own result from this value.
 *
 * Ctrl+C (ctx.signal) sends the recipe one SIGINT, so it can save a checkpoint, and SIGKILL only if it
 * is still running a minute later. The recipe runs in its own process group, so a Ctrl+C typed in the
 * terminal reaches it once, through slm, not twice.
 */
export async function runRecipe<T>(opts: RecipeOptions, ctx: BackendContext = {}): Promise<T> {
  const script = recipePath(opts.recipe);
  if (!existsSync(script)) throw new NotFoundError(`The recipe ${script} is missing from slm's installation.`, { hint: "Reinstall slm." });
  const python = opts.python ?? (await resolvePython());
  const name = path.basename(script);
  const dir = mkdtempSync(path.join(tmpdir(), "slm-recipe-"));
  const configFile = path.join(dir, "config.json");
  let stderr = "";
  let result: { data: unknown } | undefined;
  try {
    writeFileSync(configFile, JSON.stringify(opts.config, null, 2));
    const args = ["-u", script, "--config", configFile];
    let r;
    try {
      r = await exec(python.python, args, {
        cwd: opts.cwd,
        // Unbuffered and UTF-8, so events arrive as they are printed and any text survives.
        env: { PYTHONUNBUFFERED: "1", PYTHONIOENCODING: "utf-8", ...opts.env },
        signal: ctx.signal,
        buffer: false,
        tailLines: 60,
        label: name,
        killTree: true,
        killSignal: "SIGINT",
        killGraceMs: opts.graceMs ?? RECIPE_GRACE_MS,
        okExitCodes: [0, RECIPE_USAGE_EXIT, 130],
        onLine: (line, stream) => {
          if (stream === "stderr") {
            stderr = (stderr + line + "\n").slice(-STDERR_TAIL_CHARS);
            if (line.trim()) emit(ctx.onEvent, { type: "log", level: "debug", message: line });
            return;
          }
          const e = parseEventLine(line);
          if (!e) {
            if (line.trim()) emit(ctx.onEvent, { type: "log", level: "debug", message: line });
          } else if (e.type === "result") {
            result = { data: e.data };
          } else {
            ctx.onEvent?.(e);
          }
        },
      });
    } catch (err) {
      if (err instanceof ExternalError) throw new ExternalError(err.message, { command: err.command, args: err.args, stderrTail: stderr.trimEnd() }, { cause: err });
      if (err instanceof CancelledError) throw new CancelledError(`Cancelled: ${name} was interrupted.`);
      throw err;
    }
    // The recipe saw Ctrl+C itself (sent to it directly, not through slm) and stopped cleanly.
    if (r.exitCode === 130) throw new CancelledError(`Cancelled: ${name} was interrupted.`);
    if (r.exitCode === RECIPE_USAGE_EXIT) {
      // A ConfigError: the request does not fit the model (a group size that does not divide a layer, an
      // architecture the method does not know, cuda asked for without a GPU). Its one line is the message.
      const line = stderr.trimEnd().split("\n").filter((l) => l.trim()).pop();
      throw new UsageError(line ?? `${name} refused its configuration.`, { hint: line ? undefined : "Run again with --verbose to see the recipe's output." });
    }
    if (!result) {
      throw new ExternalError(`${name} finished without reporting a result.`, { command: python.python, args, stderrTail: stderr.trimEnd() }, {
        hint: "Run again with --verbose to see the recipe's output.",
      });
    }
    return result.data as T;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
