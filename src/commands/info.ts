import type { Command } from "commander";
import { formatBytes, formatCount } from "../core/format.js";
import { action } from "./action.js";

export function register(program: Command): void {
  program
    .command("info")
    .alias("show")
    .description("Show a model's GGUF metadata (architecture, parameters, context, file type, chat template, tokenizer), source and lineage")
    .argument("<model>", "registered name, catalog name, or a local .gguf file")
    .option("--template", "also print the chat template")
    .action(
      action(async (ctx, ref: string, flags: { template?: boolean }) => {
        const { modelInfo } = await import("../backends/store/info.js");
        const render = await ctx.renderer(false);
        const info = await modelInfo(ref);
        const m = info.model;
        const g = info.gguf;
        const lines: [string, string | undefined][] = [
          ["name", m.name],
          ["format", m.format],
          ["path", m.path],
          ["size", formatBytes(m.size)],
          ["architecture", g?.architecture ?? m.architecture],
          ["parameters", g ? `${formatCount(g.parameters)} (${g.parameters.toLocaleString("en-US")})` : m.parameters ? formatCount(m.parameters) : undefined],
          ["context length", String(g?.contextLength ?? m.contextLength ?? "") || undefined],
          ["file type", g?.fileType ?? m.quant],
          ["layers", g?.blockCount !== undefined ? String(g.blockCount) : undefined],
          ["embedding", g?.embeddingLength !== undefined ? String(g.embeddingLength) : undefined],
          ["tokenizer", g?.tokenizer ? `${g.tokenizer}${g.vocabSize ? ` (${g.vocabSize} tokens)` : ""}` : undefined],
          ["chat template", g ? (g.hasChatTemplate ? "yes" : "no") : undefined],
          ["splits", g && g.splitCount > 1 ? String(g.splitCount) : undefined],
          ["LoRA adapters", m.adapters?.length ? m.adapters.map((a) => `${a.path}${a.scale !== 1 ? ` (scale ${a.scale})` : ""}`).join(", ") : undefined],
          ["source", sourceText(m.source)],
          ["lineage", m.lineage.length === 0 ? "none (original)" : m.lineage.map((l) => `${l.method} of ${l.from}`).join(" ← ")],
        ];
        const width = Math.max(...lines.map(([k]) => k.length));
        let text = lines.filter(([, v]) => v !== undefined && v !== "").map(([k, v]) => `${k.padEnd(width)}  ${v}`).join("\n");
        if (m.evals?.length) {
          const { recordLine } = await import("../backends/eval/summary.js");
          text += `\n\nevals (slm eval)\n${m.evals.map((r) => `  ${recordLine(r)}`).join("\n")}`;
        }
        if (flags.template && g?.chatTemplate) text += `\n\n${g.chatTemplate}`;
        const data = { ...info, gguf: g && !flags.template ? { ...g, chatTemplate: undefined } : g };
        render.result(data, text);
      }),
    );
}

function sourceText(s: import("../backends/store/types.js").ModelSource): string {
  switch (s.type) {
    case "hub":
      return `${s.repo}@${s.revision} (commit ${s.commit.slice(0, 12)})`;
    case "builtin":
      return "built in (ships with slm)";
    default:
      return s.type;
  }
}
