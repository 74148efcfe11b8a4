import { constants as fsConstants } from "node:fs";
import { access, stat } from "node:fs/promises";
import path from "node:path";
import { CancelledError, ExternalError } from "./errors.js";

/**
 * The one way slm runs another program. Arguments are arrays (never a shell string); output can be
 * followed line by line while it runs (progress), and a failure becomes an ExternalError that names
 * the command, its arguments and the tail of what it printed. execa is imported on first use so that
 * commands that never spawn anything do not pay for it.
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

async function run(file: string, args: readonly string[], o: ExecOptions): Promise<RunOutcome> {
  const { execa } = await import("execa");
  const label = o.label ?? path.basename(file);
  const keep = o.tailLines ?? 20;
  const tails = {
    stdout: new LineTail(keep, o.onLine ? (l) => o.onLine!(l, "stdout") : undefined),
    stderr: new LineTail(keep, o.onLine ? (l) => o.onLine!(l, "stderr") : undefined),
  };
  const started = performance.now();
  const tree = (o.killTree ?? false) && process.platform !== "win32";
  const child = execa(file, [...args], {
    cwd: o.cwd,
    env: o.env,
    extendEnv: o.extendEnv ?? true,
    cancelSignal: tree ? undefined : o.signal,
    detached: tree,
    timeout: o.timeoutMs,
    input: o.input,
    stdin: o.input === undefined ? "ignore" : "pipe",
    buffer: o.buffer ?? true,
    // Tools like cmake print far more than execa's default limit; the tail is what matters.
    maxBuffer: 256 * 1024 * 1024,
    reject: false,
    stripFinalNewline: true,
    // A killed tool gets 3 s to clean up (llama-quantize has nothing to flush) before SIGKILL.
    forceKillAfterDelay: 3_000,
  });
  for (const name of ["stdout", "stderr"] as const) {
    const stream = child[name];
    stream?.setEncoding("utf8");
    stream?.on("data", (chunk: string) => {
      o.onData?.(chunk, name);
      tails[name].push(chunk);
    });
  }
  let cleanup = () => undefined as void;
  if (tree && child.pid !== undefined) cleanup = killGroupOnAbort(child.pid, o.signal);
  const r = await child.finally(() => cleanup());
  tails.stdout.end();
  tails.stderr.end();
  const bufferedOrTail = (v: unknown, name: StreamName) => (o.buffer === false ? tails[name].text() : typeof v === "string" ? v : "");
  const result: ExecResult = {
    command: file,
    args: [...args],
    exitCode: r.exitCode ?? -1,
    stdout: bufferedOrTail(r.stdout, "stdout"),
    stderr: bufferedOrTail(r.stderr, "stderr"),
    durationMs: Math.round(performance.now() - started),
  };
  const okCodes = o.okExitCodes ?? [0];
  const exitedOk = r.exitCode !== undefined && okCodes.includes(r.exitCode) && !r.isCanceled && !r.timedOut && r.signal === undefined;
  // execa marks a non-zero exit as failed even when we accept that code.
  if (exitedOk) return { ok: true, result };
  const cancelled = r.isCanceled || (o.signal?.aborted ?? false);
  if (cancelled) return { ok: false, cancelled, timedOut: false, why: "cancelled", error: new ExternalError(`${label} was cancelled.`, { command: file, args: [...args], stderrTail: "" }), result };
  const cause = (r as { cause?: unknown }).cause;
  const code = (cause as { code?: string } | undefined)?.code;
  // `short` is the bare reason (probes add it to a check's detail); `why` names the program for errors.
  let short: string;
  if (r.timedOut) short = `timed out after ${((o.timeoutMs ?? 0) / 1000).toFixed(0)} s`;
  else if (code === "ENOENT") short = `could not be started: ${file} does not exist`;
  else if (code === "EACCES") short = `could not be started: ${file} is not executable`;
  else if (r.signal) short = `was killed by ${r.signal}`;
  else if (r.exitCode !== undefined) short = `exited with code ${r.exitCode}`;
  else short = r.shortMessage ?? "failed";
  const why = `${label} ${short}`;
  // Most tools (llama.cpp's included) report errors on stderr; some print usage on stdout instead.
  const stderrTail = tails.stderr.text() || tails.stdout.text();
  const shown = stderrTail.split("\n").slice(-6).map((l) => `  ${l.trimEnd()}`).join("\n");
  const error = new ExternalError(shown ? `${why}:\n${shown}` : `${why}.`, { command: file, args: [...args], stderrTail }, { cause });
  return { ok: false, cancelled, timedOut: r.timedOut, why: short, error, result };
}

/**
 * Ends a detached program's whole process group when `signal` aborts or this process exits (a second
 * Ctrl+C exits at once, and the group must not outlive us). SIGTERM first, SIGKILL 3 s later.
 */
function killGroupOnAbort(pid: number, signal: AbortSignal | undefined): () => void {
  const kill = (sig: NodeJS.Signals) => {
    try {
      process.kill(-pid, sig);
    } catch {
      // The group is already gone.
    }
  };
  const onAbort = () => {
    kill("SIGTERM");
    setTimeout(() => kill("SIGKILL"), 3_000).unref();
  };
  const onExit = () => kill("SIGKILL");
  if (signal?.aborted) onAbort();
  else signal?.addEventListener("abort", onAbort, { once: true });
  process.once("exit", onExit);
  return () => {
    signal?.removeEventListener("abort", onAbort);
    process.removeListener("exit", onExit);
    // A pending SIGKILL stays armed: children of the group may outlive its leader.
  };
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
