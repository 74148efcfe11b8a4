/**
 * Runs test/helpers/hubServer.ts in a process of its own, for benchmarks: the server's event loop, GC
 * and file reads then never delay the timing process. Serves one repo of files from disk.
 *
 *   node --import tsx bench/hubServerProcess.ts <repo-id> <repo-path>=<file> [<repo-path>=<file>…]
 *
 * Prints one JSON line {"url", "pid", "files": {path: sha256}} on stdout once it listens (after
 * hashing the files), then serves until stdin closes or it gets SIGTERM/SIGINT.
 */
import { startHubServer } from "../test/helpers/hubServer.js";

const [repoId, ...specs] = process.argv.slice(2);
if (!repoId || specs.length === 0) {
  console.error("usage: hubServerProcess.ts <repo-id> <repo-path>=<file>…");
  process.exit(2);
}
const files = specs.map((s) => {
  const i = s.indexOf("=");
  return { path: s.slice(0, i), file: s.slice(i + 1) };
});
const server = await startHubServer({ repos: [{ id: repoId, files }] });
process.stdout.write(
  JSON.stringify({ url: server.url, pid: process.pid, files: Object.fromEntries(files.map((f) => [f.path, server.fileSha256(repoId, f.path)])) }) + "\n",
);

let closing = false;
const stop = async () => {
  if (closing) return;
  closing = true;
  await server.close();
  process.exit(0);
};
process.stdin.on("end", () => void stop());
process.stdin.on("close", () => void stop());
process.stdin.resume();
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
