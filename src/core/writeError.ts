import { SlmError, UsageError } from "./errors.js";
import { storageErrorFor } from "./storage.js";

/** Reasons that lie in the path the user gave, not in the disk: a usage matter (exit 2). */
const PATH_REASONS: Record<string, string> = {
  ENOENT: "its folder does not exist",
  ENOTDIR: "a part of its path is a file, not a folder",
  EISDIR: "it is a folder",
};

/**
 * The error for a file the user named (`/save`, `--report`) that slm could not write. Atomic writers
 * (write-file-atomic) fail on their temporary file (`<file>.<random>`), and Node's message names that
 * file: it is shown to nobody. A bad path is the user's to fix (exit 2); a read-only, unwritable or full
 * disk is a storage error (exit 8) from the one mapping in core/storage.ts.
 */
export function fileWriteError(file: string, err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  const reason = code ? PATH_REASONS[code] : undefined;
  if (reason) return new UsageError(`Cannot write ${file}: ${reason}.`, { hint: "Give a path in a folder that exists and that you can write to.", cause: err });
  const mapped = storageErrorFor(file, err);
  return mapped instanceof SlmError ? mapped : err;
}
