import { distance } from "fastest-levenshtein";

/**
 * What slm knows about llama.cpp's quantization types. The authoritative list is the one the installed
 * llama-quantize prints (parseQuantTypes): a newer llama.cpp may add types, and slm accepts them.
 */

/** `--bits N` → the type most people mean by it (llama.cpp's recommended K-quant mixes, Q8_0 for 8). */
export const BITS_TO_TYPE: Record<number, string> = { 2: "Q2_K", 3: "Q3_K_M", 4: "Q4_K_M", 5: "Q5_K_M", 6: "Q6_K", 8: "Q8_0" };
export const DEFAULT_TYPE = "Q4_K_M";

export interface QuantType {
  name: string;
  /** llama.cpp's file type number (LLAMA_FTYPE_*); undefined for COPY. */
  ftype?: number;
  description: string;
  /** For aliases ("Q4_K" → "Q4_K_M"): the canonical name. */
  aliasOf?: string;
}

/** Parses the "allowed quantization types" table that `llama-quantize --help` prints. */
export function parseQuantTypes(help: string): QuantType[] {
  const lines = help.split(/\r?\n/);
  const header = lines.findIndex((l) => /allowed quantization types/i.test(l));
  const out: QuantType[] = [];
  for (const line of header >= 0 ? lines.slice(header + 1) : lines) {
    const m = /^\s*(?:(\d+)\s+or\s+)?([A-Z][A-Z0-9_]*)\s*:\s*(.*)$/.exec(line);
    if (!m) continue;
    const description = m[3]!.trim();
    const alias = /^alias for (\S+)/i.exec(description);
    out.push({ name: m[2]!, ftype: m[1] === undefined ? undefined : Number(m[1]), description, aliasOf: alias ? alias[1]!.toUpperCase() : undefined });
  }
  return out;
}

/** The canonical type for what the user typed (any case, an alias, or a file type number), or undefined. */
export function canonicalType(input: string, types: readonly QuantType[]): string | undefined {
  const wanted = input.trim().toUpperCase();
  let t = types.find((x) => x.name === wanted);
  if (!t && /^\d+$/.test(wanted)) t = types.find((x) => x.ftype === Number(wanted) && !x.aliasOf);
  if (!t) return undefined;
  return t.aliasOf && types.some((x) => x.name === t!.aliasOf) ? t.aliasOf : t.name;
}

/** Up to three names closest to a typo, nearest first. */
export function suggest(input: string, names: readonly string[], max = 3): string[] {
  const wanted = input.trim().toUpperCase();
  const scored = names.map((n) => ({ n, d: distance(wanted, n.toUpperCase()) })).filter((x) => x.d <= Math.max(2, Math.floor(wanted.length / 3)));
  // Prefixes count as close too: "Q4" → Q4_0, Q4_1, Q4_K_M…
  const prefixed = names.filter((n) => wanted.length >= 2 && n.toUpperCase().startsWith(wanted)).map((n) => ({ n, d: 1.5 }));
  const best = new Map<string, number>();
  for (const { n, d } of [...scored, ...prefixed]) best.set(n, Math.min(d, best.get(n) ?? Infinity));
  return [...best.entries()].sort((a, b) => a[1] - b[1] || a[0].localeCompare(b[0])).slice(0, max).map(([n]) => n);
}

/** The nominal bit class of a type from its name: Q4_K_M → 4, IQ2_XS → 2, TQ1_0 → 1, F16 → 16; undefined for COPY. */
export function bitClass(type: string): number | undefined {
  const m = /^(?:I?Q|TQ|MXFP|NVFP|B?F)(\d+)/.exec(type.toUpperCase());
  return m ? Number(m[1]) : undefined;
}

/**
 * IQ types and types of 3 bits or fewer lose too much without an importance matrix to be worth making
 * without one. llama-quantize itself only refuses the very lowest (IQ1/IQ2, Q2_K_S); slm asks for an
 * importance matrix for the whole range, because a Q2_K or Q3_K made without one is rarely usable.
 */
export function requiresImatrix(type: string): boolean {
  const t = type.toUpperCase();
  if (t.startsWith("IQ")) return true;
  const bits = bitClass(t);
  return bits !== undefined && bits <= 3;
}

/** Types that are not quantized: converting between them is not "requantizing". */
export function isUnquantized(fileType: string | undefined): boolean {
  if (fileType === undefined) return true;
  return ["F32", "F16", "BF16", "ALL_F32", "MOSTLY_F16", "MOSTLY_BF16"].includes(fileType.toUpperCase());
}

/**
 * Bits per weight of each type's main tensor format (ggml block sizes), for a disk-space estimate
 * before starting. Mixtures (_M, _L) put some tensors in a larger type; the estimate adds a margin.
 */
const NOMINAL_BPW: Record<string, number> = {
  F32: 32, F16: 16, BF16: 16, Q8_0: 8.5, Q6_K: 6.5625, Q5_K: 5.5, Q5_0: 5.5, Q5_1: 6, Q4_K: 4.5, Q4_0: 4.5, Q4_1: 5,
  Q3_K: 3.4375, Q2_K: 2.625, IQ4_XS: 4.25, IQ4_NL: 4.5, IQ3_S: 3.4375, IQ3_XS: 3.3, IQ3_XXS: 3.0625, IQ3_M: 3.66,
  IQ2_M: 2.7, IQ2_S: 2.5, IQ2_XS: 2.3125, IQ2_XXS: 2.0625, IQ1_M: 1.75, IQ1_S: 1.5625, TQ1_0: 1.6875, TQ2_0: 2.0625,
  Q1_0: 1.125, Q2_0: 2.25, MXFP4_MOE: 4.25,
};

export function nominalBitsPerWeight(type: string): number | undefined {
  const t = type.toUpperCase();
  return NOMINAL_BPW[t] ?? NOMINAL_BPW[t.replace(/_[SML]$/, "")];
}

/**
 * ggml tensor type names that --output-tensor-type and --token-embedding-type accept (ggml.c's
 * type_traits in the bundled release, without the internal and removed ones). llama-quantize compares
 * them case-insensitively.
 */
export const TENSOR_TYPES = [
  "f32", "f16", "bf16", "q1_0", "q2_0", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "mxfp4", "nvfp4", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K",
  "iq2_xxs", "iq2_xs", "iq3_xxs", "iq3_s", "iq2_s", "iq1_s", "iq1_m", "iq4_nl", "iq4_xs", "tq1_0", "tq2_0",
] as const;

export function canonicalTensorType(input: string): string | undefined {
  return TENSOR_TYPES.find((t) => t.toLowerCase() === input.trim().toLowerCase());
}
