import type { Command } from "commander";
import { formatBytes, formatCount, table } from "../core/format.js";
import type { Leftovers } from "../backends/store/leftovers.js";
import { action } from "./action.js";

export function register(program: Command): void {
  program
    .command("list")
    .alias("ls")
    .description("List registered models (pulled, built in, or made by slm), or the catalog with --catalog")
    .option("--catalog", "show the catalog of known model names instead")
    .option("--metrics", "add a column per eval task with each model's latest stored score (slm eval)")
    .action(
      action(async (ctx, flags: { catalog?: boolean; metrics?: boolean }) => {
        const render = await ctx.renderer(false);
        if (flags.catalog) {
          const { catalog } = await import("../core/catalog.js");
          const rows = catalog();
          const notes = (e: (typeof rows)[number]) => [e.weights, e.kind === "embedding" ? "embeddings (slm serve)" : undefined, e.gguf?.gated || e.hf?.gated ? `gated${e.gguf?.gated ? "" : " (--format hf)"}: needs HF_TOKEN` : undefined].filter(Boolean).join("; ");
          render.result(rows, table(["NAME", "ALIASES", "PARAMS", "CONTEXT", "LICENSE", "SOURCE", "NOTES"], rows.map((e) => [e.id, e.aliases.join(", "), formatCount(e.parameters), String(e.contextLength), e.license, e.builtin ? "built in" : (e.gguf?.repo ?? e.hf?.repo ?? ""), notes(e)])));
          return;
        }
        const { listModels } = await import("../backends/store/registry.js");
        const { builtinEntries } = await import("../backends/store/builtin.js");
        const models = [...builtinEntries(), ...listModels()];
        // An ONNX model's variants stand where a GGUF's quantization does.
        const rows = models.map((m) => [m.name, m.format, m.quant ?? m.onnx?.dtypes.join(",") ?? "", formatBytes(m.size), m.parameters ? formatCount(m.parameters) : "", m.source.type === "hub" ? m.source.repo : m.source.type]);
        const headers = ["NAME", "FORMAT", "QUANT", "SIZE", "PARAMS", "SOURCE"];
        if (flags.metrics) {
          const { headlines, latestByName } = await import("../backends/eval/summary.js");
          const latest = models.map(latestByName);
          const names = [...new Set(latest.flatMap((l) => [...l.keys()]))].sort();
          headers.push(...names.map((n) => n.toUpperCase()));
          rows.forEach((r, i) => r.push(...names.map((n) => (latest[i]!.get(n) ? headlines(latest[i]!.get(n)!) : "–"))));
        }
        const { leftovers } = await import("../backends/store/leftovers.js");
        const left = await leftovers();
        render.result({ models, leftovers: left }, table(headers, rows) + leftoverTable(left));
      }),
    );
}

/** Unfinished downloads and abandoned fine-tune runs, under the models, when there are any. */
function leftoverTable(l: Leftovers): string {
  const rows = [
    ...l.downloads.map((d) => [d.repo, `unfinished download${d.totalBytes ? ` (${formatBytes(d.receivedBytes)} of ${formatBytes(d.totalBytes)})` : ""}${d.active ? ", downloading now" : ""}`, formatBytes(d.bytes)]),
    ...l.runs.map((r) => [r.name, r.finished ? "fine-tune run of a removed model" : `interrupted fine-tune run${r.resumable ? " (resumable with --resume)" : ""}`, formatBytes(r.bytes)]),
  ];
  if (rows.length === 0) return "";
  return `\n\nLeft by interrupted pulls and fine-tunes (${formatBytes(l.bytes)}):\n${table(["NAME", "WHAT", "SIZE"], rows)}\n\`slm rm NAME\` removes one, \`slm rm --leftovers\` all of them.`;
}
