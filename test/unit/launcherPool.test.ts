import { existsSync, readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";

/**
 * Parallel generation on slots (src/backends/eval/parallel.ts) batches the sequences' decodes only
 * when node-llama-cpp's native calls run on one libuv thread, which bin/slm.js sets for the verbs it
 * lists, before the pool starts. A command that generates on slots but is missing from that list runs
 * its decodes on four pool threads instead: `slm distill` was, at first.
 */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

/** The relative imports of a source file, static and dynamic, as .ts paths. */
function imports(file: string): string[] {
  const text = readFileSync(file, "utf8");
  return [...text.matchAll(/(?:from|import\()\s*"(\.[^"]+)"/g)]
    .map((m) => path.resolve(path.dirname(file), m[1]!).replace(/\.js$/, ".ts"))
    .flatMap((p) => (existsSync(p) ? [p] : existsSync(`${p}x`) ? [`${p}x`] : []));
}

function reaches(start: string, target: string): boolean {
  const seen = new Set([start]);
  const todo = [start];
  while (todo.length > 0) {
    const f = todo.pop()!;
    if (f === target) return true;
    for (const d of imports(f)) if (!seen.has(d)) (seen.add(d), todo.push(d));
  }
  return false;
}

it("every command that generates on parallel slots runs with one libuv pool thread", () => {
  const launcher = readFileSync(path.join(ROOT, "bin", "slm.js"), "utf8");
  const listed = new Set([...(/const INFERENCE = new Set\(\[([^\]]*)\]\)/.exec(launcher)?.[1] ?? "").matchAll(/"([a-z]+)"/g)].map((m) => m[1]!));
  expect(listed.has("eval")).toBe(true);
  const slots = path.join(ROOT, "src", "backends", "eval", "parallel.ts");
  const commands = path.join(ROOT, "src", "commands");
  // A verb's command file is src/commands/<verb>.ts; helpers there (quantizeSweep.ts) belong to one.
  const verbs = readdirSync(commands)
    .map((f) => f.replace(/\.ts$/, ""))
    .filter((v) => new RegExp(`\\.command\\("${v}"`).test(readFileSync(path.join(commands, `${v}.ts`), "utf8")));
  const onSlots = verbs.filter((v) => reaches(path.join(commands, `${v}.ts`), slots));
  expect(onSlots).toContain("eval");
  expect(onSlots.filter((v) => !listed.has(v))).toEqual([]);
});
