import type { Command } from "commander";
import { action } from "./action.js";

export function register(program: Command): void {
  program
    .command("info")
    .alias("show")
    .description("Show what a model or adapter is: architecture, parameters, context, file type, tokenizer, chat template, source and lineage")
    .argument("<model>", "registered name, catalog name, a local .gguf file (model or LoRA adapter), a Hugging Face model folder, an ONNX model folder or a PEFT adapter folder")
    .option("--template", "also print the chat template")
    .option("--dtype <dtype>", "ONNX models: show the inputs and outputs of this variant (same as NAME:dtype)")
    .action(
      action(async (ctx, ref: string, flags: { template?: boolean; dtype?: string }) => {
        const { modelInfo } = await import("../backends/store/info.js");
        const { adapterInfoText, modelInfoText } = await import("../ui/infoText.js");
        const render = await ctx.renderer(false);
        const info = await modelInfo(ref, { dtype: flags.dtype });
        if ("peft" in info) return render.result(info, adapterInfoText(info));
        const m = info.model;
        const g = info.gguf;
        let text = modelInfoText(info);
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
