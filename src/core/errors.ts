/**
 * One error hierarchy for the whole CLI. Backends throw these; only src/cli.ts turns them into an exit
 * code and a message. `hint` says what the user can do next.
 */
export class SlmError extends Error {
  readonly exitCode: number;
  readonly hint?: string;
  constructor(message: string, options: { exitCode?: number; hint?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.exitCode = options.exitCode ?? 1;
    this.hint = options.hint;
  }
}

export const EXIT = {
  generic: 1,
  usage: 2,
  notFound: 3,
  network: 4,
  missingDependency: 5,
  external: 6,
  integrity: 7,
  storage: 8,
  cancelled: 130,
} as const;

type Opts = { hint?: string; cause?: unknown };

export class UsageError extends SlmError {
  constructor(message: string, opts: Opts = {}) {
    super(message, { ...opts, exitCode: EXIT.usage });
  }
}

export class NotFoundError extends SlmError {
  constructor(message: string, opts: Opts = {}) {
    super(message, { ...opts, exitCode: EXIT.notFound });
  }
}

export class NetworkError extends SlmError {
  /** HTTP status when the failure was an HTTP answer; undefined for connection failures. */
  readonly status?: number;
  constructor(message: string, opts: Opts & { status?: number } = {}) {
    super(message, { ...opts, exitCode: EXIT.network });
    this.status = opts.status;
  }
}

export class MissingDependencyError extends SlmError {
  /** The `slm setup …` command (or other step) that installs what is missing. */
  readonly fix: string;
  constructor(message: string, fix: string, opts: Opts = {}) {
    super(message, { ...opts, exitCode: EXIT.missingDependency, hint: opts.hint ?? `Run \`${fix}\`.` });
    this.fix = fix;
  }
}

export class ExternalError extends SlmError {
  readonly command: string;
  readonly args: readonly string[];
  readonly stderrTail: string;
  constructor(message: string, details: { command: string; args: readonly string[]; stderrTail: string }, opts: Opts = {}) {
    super(message, { ...opts, exitCode: EXIT.external });
    this.command = details.command;
    this.args = details.args;
    this.stderrTail = details.stderrTail;
  }
}

export class IntegrityError extends SlmError {
  constructor(message: string, opts: Opts = {}) {
    super(message, { ...opts, exitCode: EXIT.integrity });
  }
}

/**
 * slm cannot write where it keeps things: a read-only or permission-denied folder, a path under a
 * regular file, a full disk or quota. `path` is the place that failed; the hint names the setting that
 * moves it (SLM_HOME, HF_HUB_CACHE) or says how much space is needed.
 */
export class StorageError extends SlmError {
  readonly path: string;
  constructor(message: string, path: string, opts: Opts = {}) {
    super(message, { ...opts, exitCode: EXIT.storage });
    this.path = path;
  }
}

export class CancelledError extends SlmError {
  constructor(message = "Cancelled.", opts: Opts = {}) {
    super(message, { ...opts, exitCode: EXIT.cancelled });
  }
}

/** True for errors caused by an AbortSignal, whichever layer raised them. */
export function isAbort(err: unknown): boolean {
  if (err instanceof CancelledError) return true;
  return err instanceof Error && (err.name === "AbortError" || (err as { code?: string }).code === "ABORT_ERR");
}
