/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time by function and by file, and the
 * total time under chosen functions. For finding where a benchmark's time goes.
 *
 *   npx tsx bench/cpuprofile.ts <file.cpuprofile> [--top N] [--under name1,name2]
 */
import { readFileSync } from "node:fs";
import { table } from "./lib.js";

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: Node[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const args = process.argv.slice(2);
const file = args[0];
if (!file) {
  console.error("usage: npx tsx bench/cpuprofile.ts <file.cpuprofile> [--top N] [--under name1,name2]");
  process.exit(2);
}
const opt = (name: string, def: string) => {
  const i = args.indexOf(name);
  return i < 0 ? def : args[i + 1]!;
};
const top = Number(opt("--top", "25"));
const under = opt("--under", "").split(",").filter(Boolean);

const p = JSON.parse(readFileSync(file, "utf8")) as Profile;
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

// Self time per node from the samples (each sample's delta is the time until the next one).
const self = new Map<number, number>();
for (let i = 0; i < p.samples.length; i++) {
  const dt = (p.timeDeltas[i + 1] ?? 0) / 1000;
  self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + dt);
}
const totalMs = (p.endTime - p.startTime) / 1000;

const short = (url: string) => url.replace(/^file:\/\//, "").replace(/^.*\/node_modules\//, "nm:").replace(/^.*\/(dist|src)\//, "$1/");
const label = (n: Node) => `${n.callFrame.functionName || "(anonymous)"} ${short(n.callFrame.url)}${n.callFrame.url ? `:${n.callFrame.lineNumber + 1}` : ""}`;

const fnSelf = new Map<string, number>();
const fileSelf = new Map<string, number>();
for (const [id, ms] of self) {
  const n = byId.get(id)!;
  fnSelf.set(label(n), (fnSelf.get(label(n)) ?? 0) + ms);
  const f = n.callFrame.url ? short(n.callFrame.url) : `(${n.callFrame.functionName})`;
  fileSelf.set(f, (fileSelf.get(f) ?? 0) + ms);
}
const rows = (m: Map<string, number>) =>
  [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, ms]) => [k.slice(0, 110), ms.toFixed(0), `${((ms / totalMs) * 100).toFixed(1)}%`]);

console.log(`profile: ${file}, ${totalMs.toFixed(0)} ms wall, ${p.samples.length} samples\n`);
console.log(table(["function (self time)", "ms", "%"], rows(fnSelf)));
console.log("");
console.log(table(["file (self time)", "ms", "%"], rows(fileSelf)));

if (under.length) {
  // Inclusive time: a sample counts for a name if any frame on its stack has that function name.
  const incl = new Map<string, number>(under.map((u) => [u, 0]));
  for (const [id, ms] of self) {
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const fn = byId.get(cur)!.callFrame.functionName;
      if (incl.has(fn) && !seen.has(fn)) {
        seen.add(fn);
        incl.set(fn, incl.get(fn)! + ms);
      }
    }
  }
  console.log("");
  console.log(table(["function (inclusive)", "ms", "%"], [...incl].map(([k, ms]) => [k, ms.toFixed(0), `${((ms / totalMs) * 100).toFixed(1)}%`])));
}
