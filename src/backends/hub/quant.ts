/**
 * Quantization types as they appear in GGUF file names on the Hub. A repo's file for a type is found by
 * matching these in its file names, never by a stored file name.
 */
export const QUANT_TYPES = [
  "F32", "F16", "BF16",
  "Q8_0", "Q8_K_XL", "Q6_K", "Q6_K_L", "Q6_K_XL",
  "Q5_0", "Q5_1", "Q5_K_S", "Q5_K_M", "Q5_K_L", "Q5_K_XL",
  "Q4_0", "Q4_1", "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "Q4_K_S", "Q4_K_M", "Q4_K_L", "Q4_K_XL",
  "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q3_K_XL",
  "Q2_K", "Q2_K_S", "Q2_K_L", "Q2_K_XL",
  "IQ4_XS", "IQ4_NL", "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M",
  "TQ1_0", "TQ2_0", "MXFP4",
] as const;

const ALIASES: Record<string, string> = { FP16: "F16", FP32: "F32" };

// Longest first, so Q4_0_4_4 wins over Q4_0 and Q4_K_XL over Q4_K.
const NAMES = [...QUANT_TYPES, ...Object.keys(ALIASES)].sort((a, b) => b.length - a.length);
const PATTERN = new RegExp(`(?:^|[^A-Za-z0-9])(${NAMES.join("|")})(?=[^A-Za-z0-9]|$)`, "i");

const SPLIT = /-(\d{5})-of-(\d{5})\.gguf$/i;

/** The quant type named in a GGUF file's path, upper-cased; undefined when none is recognisable. */
export function quantOfFile(repoPath: string): string | undefined {
  const base = repoPath.split("/").pop() ?? repoPath;
  const stem = base.replace(SPLIT, "").replace(/\.gguf$/i, "");
  const m = PATTERN.exec(stem);
  if (!m) return undefined;
  const t = m[1]!.toUpperCase();
  return ALIASES[t] ?? t;
}

export function normalizeQuant(q: string): string {
  const t = q.toUpperCase();
  return ALIASES[t] ?? t;
}

/** `{index, count}` for `name-00001-of-00003.gguf`, undefined for a single file. */
export function splitInfo(repoPath: string): { index: number; count: number; group: string } | undefined {
  const m = SPLIT.exec(repoPath);
  if (!m) return undefined;
  return { index: Number(m[1]), count: Number(m[2]), group: repoPath.slice(0, m.index) };
}

/** Files that are GGUF weights of a language model, not projectors or importance matrices. */
export function isModelGguf(repoPath: string): boolean {
  const base = (repoPath.split("/").pop() ?? "").toLowerCase();
  return base.endsWith(".gguf") && !base.includes("mmproj") && !base.startsWith("imatrix") && !base.includes(".imatrix");
}
