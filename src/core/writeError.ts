import { SlmError, UsageError } from "./errors.js";

/**
 * The error for a file slm could not write at `file`, said in the user's terms. Atomic writers
 * (write-file-atomic) fail on their temporary file (`<file>.<random>`), and Node's message names that
 * file: it is shown to nobody, since the user named `file`, and the cause is in the error code.
 */
export function fileWriteError(file: string, err: unknown): SlmError {
  const code = (err as NodeJS.ErrnoException).code;
  const why: Record<string, string> = {
    ENOENT: "its folder does not exist",
    ENOTDIR: "a part of its path is a file, not a folder",
    EISDIR: "it is a folder",
    EACCES: "permission denied",
    EPERM: "permission denied",
    EROFS: "the file system is read-only",
    ENOSPC: "the disk is full",
    EDQUOT: "the disk quota is used up",
  };
  const reason = (code && why[code]) ?? code ?? (err as Error).message;
  const message = `Cannot write ${file}: ${reason}.`;
  if (code === "ENOSPC" || code === "EDQUOT") return new SlmError(message, { hint: "Free some space and try again.", cause: err });
  return new UsageError(message, { hint: "Give a path in a folder that exists and that you can write to.", cause: err });
}
