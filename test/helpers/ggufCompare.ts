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

/** The token ids whose type or score differ between two GGUF vocabularies of the same length. */
export function vocabDifferences(a: string, b: string): { tokenType: number[]; scores: number[] } {
  const arr = (file: string, key: string) => {
    const v = readGgufHeader(file, { arrayLimit: 1_000_000 }).metadata.get(key);
    return typeof v === "object" && v !== null && "values" in v ? (v.values ?? []) : [];
  };
  const diff = (key: string) => {
    const x = arr(a, key);
    const y = arr(b, key);
    if (x.length !== y.length) throw new Error(`${key}: ${x.length} ≠ ${y.length} entries`);
    return x.flatMap((v, i) => (v === y[i] ? [] : [i]));
  };
  return { tokenType: diff("tokenizer.ggml.token_type"), scores: diff("tokenizer.ggml.scores") };
}

/**
 * Differences between a GGUF converted from the fixture's hf/ folder now and the fixture's reference
 * GGUFs (or models made from them). The references were converted before hf/tokenizer_config.json
 * listed <unk>, <s> and </s> (ids 0-2) in added_tokens_decoder, then patched (the fixture's
 * tools/patch_vocab.py). Converting hf/ as it is now marks those three as special: score -1000 instead
 * of 0, and <unk> CONTROL instead of UNKNOWN. That, and only that, is allowed to differ; every tensor
 * byte and every other key must be identical.
 */
export function fixtureDifferences(file: string, reference: string): string[] {
  const diffs = ggufDifferences(file, reference, { ignoreKeys: /^general\.|^tokenizer\.ggml\.(scores|token_type)$/ });
  const v = vocabDifferences(file, reference);
  if (v.tokenType.join() !== "0" || v.scores.join() !== "0,1,2") diffs.push(`vocabulary: token types differ at ${v.tokenType.join(", ") || "none"}, scores at ${v.scores.join(", ") || "none"} (expected 0, and 0-2)`);
  return diffs;
}
