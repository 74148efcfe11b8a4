import { closeSync, openSync, readSync } from "node:fs";
import { tensorBytes } from "../../src/backends/gguf/ggmlTypes.js";
import { type GgufValue, readGgufHeader } from "../../src/backends/gguf/reader.js";

/**
 * Every difference between two GGUF files that matters to inference: the tensors (names, types, shapes
 * and bytes) and the metadata outside `general.*` (which names the source folder and tool, and may
 * differ). An empty list means the files are the same model.
 */
export function ggufDifferences(a: string, b: string, opts: { ignoreKeys?: RegExp } = {}): string[] {
  const ha = readGgufHeader(a, { arrayLimit: 1_000_000 });
  const hb = readGgufHeader(b, { arrayLimit: 1_000_000 });
  const diffs: string[] = [];
  const ignore = opts.ignoreKeys ?? /^general\./;
  const keys = new Set([...ha.metadata.keys(), ...hb.metadata.keys()]);
  for (const k of keys) {
    if (ignore.test(k)) continue;
    const va = show(ha.metadata.get(k));
    const vb = show(hb.metadata.get(k));
    if (va !== vb) diffs.push(`metadata ${k}: ${va.slice(0, 120)} ≠ ${vb.slice(0, 120)}`);
  }
  const tb = new Map(hb.tensors.map((t) => [t.name, t]));
  const fa = openSync(a, "r");
  const fb = openSync(b, "r");
  try {
    for (const t of ha.tensors) {
      const u = tb.get(t.name);
      if (!u) {
        diffs.push(`tensor ${t.name} only in the first file`);
        continue;
      }
      tb.delete(t.name);
      if (t.type !== u.type || t.dims.join("x") !== u.dims.join("x")) {
        diffs.push(`tensor ${t.name}: type ${t.type} ${t.dims.join("x")} ≠ type ${u.type} ${u.dims.join("x")}`);
        continue;
      }
      const n = tensorBytes(t.type, t.dims) ?? 0;
      const ba = Buffer.alloc(n);
      const bb = Buffer.alloc(n);
      readSync(fa, ba, 0, n, ha.dataOffset + t.offset);
      readSync(fb, bb, 0, n, hb.dataOffset + u.offset);
      if (!ba.equals(bb)) diffs.push(`tensor ${t.name}: data differs`);
    }
  } finally {
    closeSync(fa);
    closeSync(fb);
  }
  for (const name of tb.keys()) diffs.push(`tensor ${name} only in the second file`);
  return diffs;
}

function show(v: GgufValue | undefined): string {
  if (v === undefined) return "(absent)";
  return JSON.stringify(v, (_k, x: unknown) => (typeof x === "bigint" ? x.toString() : x));
}
