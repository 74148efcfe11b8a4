import type { EvalRecord, ModelEntry } from "../store/types.js";

/**
 * Stored eval results in a line or a cell, for `slm info` and `slm list --metrics`. Kept apart from the
 * eval runner so those read-only commands import nothing heavy.
 */
const pct = (x: number | undefined) => (x === undefined ? "?" : `${(x * 100).toFixed(1)} %`);

/** The one number that sums a record up: accuracy, acc, perplexity or mean KLD. */
export function headline(r: EvalRecord): string {
  const m = r.metrics;
  switch (r.kind) {
    case "generate":
      return pct(m.accuracy);
    case "choice":
      return `${pct(m.acc)} acc`;
    case "perplexity":
      return `ppl ${m.ppl?.toFixed(3) ?? "?"}`;
    case "kld":
      return `KLD ${m.kld_mean?.toExponential(2) ?? "?"}`;
  }
}

/** "q4 " for a record of an ONNX variant (its dtype is one of its settings), else nothing. */
function variant(r: EvalRecord): string {
  return r.settings.dtype !== undefined ? `${r.settings.dtype} ` : "";
}

/** One line per record for `slm info`: what, on what, how many, when (and of which ONNX variant). */
export function recordLine(r: EvalRecord): string {
  const m = r.metrics;
  let detail: string;
  if (r.kind === "generate") detail = `${pct(m.accuracy)} ${r.settings.match ?? "exact"} match (95 % CI ${pct(m.accuracy_low)}–${pct(m.accuracy_high)})`;
  else if (r.kind === "choice") detail = `acc ${pct(m.acc)} (${pct(m.acc_low)}–${pct(m.acc_high)}), acc_norm ${pct(m.acc_norm)}`;
  else detail = headline(r);
  const limit = r.settings.limit !== undefined ? `, first ${r.settings.limit}` : "";
  const dtype = r.settings.dtype !== undefined ? ` (${r.settings.dtype})` : "";
  return `${r.name}${dtype}: ${detail}, ${r.n} ${r.kind === "generate" || r.kind === "choice" ? "questions" : "tokens"}${limit}, ${r.at.slice(0, 10)} (${r.file}, sha256 ${r.sha256.slice(0, 12)})`;
}

/** The newest record per name and ONNX variant, for one column per task in `slm list --metrics`. */
export function latestByName(entry: ModelEntry): Map<string, EvalRecord[]> {
  const out = new Map<string, Map<string, EvalRecord>>();
  for (const r of entry.evals ?? []) {
    const byVariant = out.get(r.name) ?? new Map<string, EvalRecord>();
    byVariant.set(String(r.settings.dtype ?? ""), r);
    out.set(r.name, byVariant);
  }
  return new Map([...out].map(([name, byVariant]) => [name, [...byVariant.values()]]));
}

/** A `slm list --metrics` cell: the headline, or one per ONNX variant ("fp32 100.0 %, q4 98.0 %"). */
export function headlines(records: readonly EvalRecord[]): string {
  return records.map((r) => `${variant(r)}${headline(r)}`).join(", ");
}
