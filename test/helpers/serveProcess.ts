import type { ResultPromise } from "execa";

/**
 * Waits for `slm serve`'s startup line ("listening on http://…") on the process's stderr. Returns the URL
 * and what stderr held so far (and keeps collecting); fails with that stderr if the server exits first or
 * says nothing within `timeoutMs`.
 */
export function listening(proc: ResultPromise<{ reject: false }>, timeoutMs = 120_000): Promise<{ url: string; stderr: () => string }> {
  let err = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no startup line after ${timeoutMs / 1000} s:\n${err}`)), timeoutMs);
    proc.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
      const m = /listening on (http:\/\/[^\s(]+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve({ url: m[1]!, stderr: () => err });
      }
    });
    void proc.then((r) => {
      clearTimeout(timer);
      reject(new Error(`slm serve exited with ${r.exitCode} before listening:\n${err}`));
    });
  });
}
