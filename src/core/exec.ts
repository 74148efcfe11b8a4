import { constants as fsConstants } from "node:fs";
import { access, stat } from "node:fs/promises";
import path from "node:path";
import { CancelledError, ExternalError } from "./errors.js";
import { toolStorageHint } from "./storage.js";

/**
 * The one way slm runs another program. Arguments are arrays (never a shell string); output can be
 * followed line by line while it runs (progress), and a failure becomes an ExternalError that names
 * the command, its arguments and the tail of what it printed.
 *
 * Built on node:child_process rather than execa (DESIGN §3's choice): importing execa 9 took 190–230 ms
 * on the 2-core machine, against 8 ms for child_process, and quantize's whole overhead over running
 * llama-quantize directly is budgeted at 5 % of a 2–3 s run (docs/benchmarks.md). Everything used here
 * (arrays, abort, timeouts, process-group kill, line callbacks, tails) is a few lines on spawn(). What
 * is given up: execa's Windows shims (cross-spawn); slm only spawns real executables, not .cmd files.
 */

export type StreamName = "stdout" | "stderr";

export interface ExecOptions {
  cwd?: string;
  /** Merged over process.env unless `extendEnv` is false. */
  env?: NodeJS.ProcessEnv;
  extendEnv?: boolean;
  signal?: AbortSignal;
  timeoutMs?: number;
  /** Written to stdin; stdin is closed ("ignore") otherwise, so a tool can never wait for a keypress. */
  input?: string;
  /** Each complete line of output, without its terminator. `\r` ends a line too (progress redraws). */
  onLine?: (line: string, stream: StreamName) => void;
  /** Raw output as it arrives, for tools that report progress without newlines (llama-imatrix). */
  onData?: (chunk: string, stream: StreamName) => void;
  /**
   * Keep the whole output in the result (default). Long builds print megabytes nobody reads: with
   * false only the last `tailLines` lines of each stream are kept.
   */
  buffer?: boolean;
  /** Exit codes that count as success (e.g. llama-quantize prints its help and exits 1). */
  okExitCodes?: readonly number[];
  /** Lines of output kept for the error message (default 20). */
  tailLines?: number;
  /** How the program is named in messages (default: its file name). */
  label?: string;
  /**
   * Run the program in its own process group and end the whole group on abort or exit. For programs
   * that start others (cmake → make → compilers): killing only cmake would leave the compilers running.
   * Not on Windows, where there are no process groups; there only the program itself is ended.
   */
  killTree?: boolean;
  /**
   * How a cancel or timeout asks the program to stop (default SIGTERM), and how long it may take before
   * SIGKILL (default 3 s). Python recipes get SIGINT and a minute, to save a checkpoint first.
   */
  killSignal?: NodeJS.Signals;
  killGraceMs?: number;
}

export interface ExecResult {
  command: string;
  args: string[];
  exitCode: number;
  stdout: string;
  stderr: string;
  durationMs: number;
}

/** Keeps the last `max` lines of a stream, plus the unterminated remainder. */
class LineTail {
  private lines: string[] = [];
  private partial = "";
  constructor(
    private readonly max: number,
    private readonly onLine?: (line: string) => void,
  ) {}
  push(chunk: string): void {
    const parts = (this.partial + chunk).split(/\r\n|\r|\n/);
    this.partial = parts.pop() ?? "";
    for (const line of parts) {
      this.onLine?.(line);
      this.lines.push(line);
      if (this.lines.length > this.max) this.lines.shift();
    }
  }
  end(): void {
    if (this.partial) {
      this.onLine?.(this.partial);
      this.lines.push(this.partial);
      if (this.lines.length > this.max) this.lines.shift();
      this.partial = "";
    }
  }
  text(): string {
    return this.lines.filter((l) => l.trim() !== "").join("\n");
  }
}

/** Runs a program to completion. Throws ExternalError on failure and CancelledError when `signal` aborts. */
export async function exec(file: string, args: readonly string[], o: ExecOptions = {}): Promise<ExecResult> {
  const r = await run(file, args, o);
  if (r.ok) return r.result;
  throw r.cancelled ? new CancelledError() : r.error;
}

export interface ProbeResult extends ExecResult {
  ok: boolean;
  timedOut: boolean;
  /** Why it failed, in a few words plus the last lines of stderr; undefined when ok. */
  error?: string;
}

/**
 * Runs a program whose failure is information, not an error (doctor's probes, `--version` checks):
 * never throws, except CancelledError when `signal` aborts.
 */
export async function probe(file: string, args: readonly string[], o: ExecOptions = {}): Promise<ProbeResult> {
  const r = await run(file, args, o);
  if (!r.ok && r.cancelled) throw new CancelledError();
  if (r.ok) return { ...r.result, ok: true, timedOut: false };
  const tail = r.error.stderrTail.split("\n").slice(-3).join(" ").trim();
  return { ...r.result, ok: false, timedOut: r.timedOut, error: tail ? `${r.why}: ${tail}` : r.why };
}

type RunOutcome =
  | { ok: true; result: ExecResult }
  | { ok: false; cancelled: boolean; timedOut: boolean; why: string; error: ExternalError; result: ExecResult };

/** What a finished child left: its exit, and how it got there. */
interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  spawnError?: NodeJS.ErrnoException;
  timedOut: boolean;
  cancelled: boolean;
}

async function run(file: string, args: readonly string[], o: ExecOptions): Promise<RunOutcome> {
  const { spawn } = await import("node:child_process");
  const label = o.label ?? path.basename(file);
  const keep = o.tailLines ?? 20;
  const buffer = o.buffer ?? true;
  const tails = {
    stdout: new LineTail(keep, o.onLine ? (l) => o.onLine!(l, "stdout") : undefined),
    stderr: new LineTail(keep, o.onLine ? (l) => o.onLine!(l, "stderr") : undefined),
  };
  const full: Record<StreamName, string[]> = { stdout: [], stderr: [] };
  const started = performance.now();
  const tree = (o.killTree ?? false) && process.platform !== "win32";
  const exit = await new Promise<Exit>((resolve) => {
    const state = { timedOut: false, cancelled: false };
    let child: import("node:child_process").ChildProcess;
    try {
      child = spawn(file, [...args], {
        cwd: o.cwd,
        env: o.extendEnv === false ? o.env : { ...process.env, ...o.env },
        stdio: [o.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
        // Its own process group, so the whole tree can be ended at once (see killTree).
        detached: tree,
        windowsHide: true,
      });
    } catch (err) {
      resolve({ code: null, signal: null, spawnError: err as NodeJS.ErrnoException, ...state });
      return;
    }
    const kill = (sig: NodeJS.Signals) => {
      try {
        if (tree && child.pid !== undefined) process.kill(-child.pid, sig);
        else child.kill(sig);
      } catch {
        // Already gone.
      }
    };
    // SIGTERM first; a tool that ignores it gets SIGKILL 3 s later (llama.cpp's tools have nothing to flush).
    let stopping = false;
    const stop = () => {
      if (stopping) return;
      stopping = true;
      kill(o.killSignal ?? "SIGTERM");
      setTimeout(() => kill("SIGKILL"), o.killGraceMs ?? 3_000).unref();
    };
    const onAbort = () => {
      state.cancelled = true;
      stop();
    };
    // A child must not outlive slm (a second Ctrl+C exits at once, without waiting for cleanup).
    const onExit = () => kill("SIGKILL");
    const timer = o.timeoutMs
      ? setTimeout(() => {
          state.timedOut = true;
          stop();
        }, o.timeoutMs)
      : undefined;
    if (o.signal?.aborted) onAbort();
    else o.signal?.addEventListener("abort", onAbort, { once: true });
    process.once("exit", onExit);
    for (const name of ["stdout", "stderr"] as const) {
      const stream = child[name];
      stream?.setEncoding("utf8");
      stream?.on("data", (chunk: string) => {
        o.onData?.(chunk, name);
        tails[name].push(chunk);
        if (buffer) full[name].push(chunk);
      });
    }
    if (o.input !== undefined) child.stdin?.end(o.input);
    let spawnError: NodeJS.ErrnoException | undefined;
    child.on("error", (err: NodeJS.ErrnoException) => {
      spawnError = err;
    });
    // "close" waits for the output streams too, so every line has been handed over by then.
    child.on("close", (code, signal) => {
      if (timer) clearTimeout(timer);
      o.signal?.removeEventListener("abort", onAbort);
      process.removeListener("exit", onExit);
      resolve({ code, signal, spawnError, ...state });
    });
  });
  tails.stdout.end();
  tails.stderr.end();
  const text = (name: StreamName) => (buffer ? full[name].join("").replace(/\r?\n$/, "") : tails[name].text());
  const result: ExecResult = {
    command: file,
    args: [...args],
    exitCode: exit.code ?? -1,
    stdout: text("stdout"),
    stderr: text("stderr"),
    durationMs: Math.round(performance.now() - started),
  };
  const okCodes = o.okExitCodes ?? [0];
  if (!exit.spawnError && !exit.timedOut && !exit.cancelled && exit.code !== null && okCodes.includes(exit.code)) return { ok: true, result };
  const cancelled = exit.cancelled || (o.signal?.aborted ?? false);
  if (cancelled) return { ok: false, cancelled, timedOut: false, why: "cancelled", error: new ExternalError(`${label} was cancelled.`, { command: file, args: [...args], stderrTail: "" }), result };
  const code = exit.spawnError?.code;
  // `short` is the bare reason (probes add it to a check's detail); `why` names the program for errors.
  let short: string;
  if (exit.timedOut) short = `timed out after ${((o.timeoutMs ?? 0) / 1000).toFixed(0)} s`;
  else if (code === "ENOENT") short = `could not be started: ${file} does not exist`;
  else if (code === "EACCES") short = `could not be started: ${file} is not executable`;
  else if (exit.spawnError) short = `could not be started: ${exit.spawnError.message}`;
  else if (exit.signal) short = `was killed by ${exit.signal}`;
  else short = `exited with code ${exit.code}`;
  const why = `${label} ${short}`;
  // Most tools (llama.cpp's included) report errors on stderr; some print usage on stdout instead.
  const stderrTail = tails.stderr.text() || tails.stdout.text();
  const shown = stderrTail.split("\n").slice(-6).map((l) => `  ${l.trimEnd()}`).join("\n");
  const error = new ExternalError(shown ? `${why}:\n${shown}` : `${why}.`, { command: file, args: [...args], stderrTail }, { cause: exit.spawnError, hint: toolStorageHint(stderrTail) });
  return { ok: false, cancelled, timedOut: exit.timedOut, why: short, error, result };
}

/** `which`, over explicit folders, honouring PATHEXT on Windows. An absolute name is checked as is. */
export async function findExecutable(name: string, dirs: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  const exts = process.platform === "win32" ? ["", ...(env.PATHEXT ?? ".EXE;.CMD;.BAT").split(";").filter(Boolean)] : [""];
  const candidates = path.isAbsolute(name) ? [name] : dirs.flatMap((d) => exts.map((e) => path.join(d, name + e)));
  for (const file of candidates) {
    try {
      if ((await stat(file)).isFile()) {
        await access(file, fsConstants.X_OK);
        return file;
      }
    } catch {
      // Not here (or not executable): keep looking.
    }
  }
  return undefined;
}

/** The folders of PATH (Windows spells it Path). */
export function pathDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  return (env.PATH ?? env.Path ?? "").split(path.delimiter).filter(Boolean);
}
