import { IntegrityError } from "../../core/errors.js";

/**
 * File names come from the server and are never trusted as paths: each must be a relative POSIX path
 * of plain segments, so joining it under a snapshot folder cannot escape that folder.
 */
export function assertSafeRepoPath(p: string, repo: string): void {
  const bad =
    p.length === 0 ||
    p.length > 1024 ||
    p.includes("\\") ||
    p.includes("\0") ||
    p.startsWith("/") ||
    /^[A-Za-z]:/.test(p) ||
    p.split("/").some((seg) => seg === "" || seg === "." || seg === "..");
  if (bad) {
    throw new IntegrityError(`The Hub listed an unsafe file name in ${repo}: ${JSON.stringify(p)}. Refusing to download it.`, {
      hint: "File names must be relative paths without '..', backslashes or a leading '/'. Check HF_ENDPOINT points at a server you trust.",
    });
  }
}
