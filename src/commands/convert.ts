import { type Command, Option } from "commander";
import type { ConvertModelResult } from "../backends/convert/model.js";
import { formatBytes, formatDuration } from "../core/format.js";
import { action } from "./action.js";

interface ConvertFlags {
  outtype?: string;
  out?: string;
}

export function register(program: Command): void {
  program
    .command("convert")
    .description("Convert Hugging Face weights (safetensors) to GGUF with llama.cpp's convert_hf_to_gguf.py and register the result")
    .argument("<model>", "a Hugging Face model folder, a model pulled with --format hf, a catalog name, or org/repo (pulled with --format hf first)")
    .addOption(new Option("--outtype <type>", "tensor type of the GGUF (default f16)").choices(["f16", "bf16", "f32", "q8_0"]))
    .option("-o, --out <name>", "register under this name (default <model>-<OUTTYPE>)")
    .addHelpText(
      "after",
      `
Runs the convert_hf_to_gguf.py of the llama.cpp release node-llama-cpp ships, so the file matches the
engine slm runs. It needs slm's Python environment (\`slm setup python\`) or SLM_PYTHON pointing at any
interpreter with torch, numpy, transformers, pyyaml, tqdm and (for tokenizer.model) sentencepiece.
The result lives in $SLM_HOME/models/<name>/; Ctrl+C or a failure leaves no file and no registry entry.

Examples:
  slm convert ./my-model --outtype f16                   → my-model-F16
  slm convert HuggingFaceTB/SmolLM2-135M-Instruct --out smollm2-f16
  slm convert test/fixtures/tiny-arith/hf --outtype f32 --out tiny-arith-f32`,
    )
    .action(
      action(async (ctx, model: string, flags: ConvertFlags) => {
        const { convertModel } = await import("../backends/convert/model.js");
        const render = await ctx.renderer();
        const r = await convertModel({ ref: model, outtype: flags.outtype, out: flags.out }, { signal: ctx.signal, onEvent: render.onEvent });
        render.result(r, summary(r));
      }),
    );
}

function summary(r: ConvertModelResult): string {
  const c = r.conversion;
  return [
    `${r.model.name}: ${c.architecture}, ${r.outtype.toUpperCase()}, ${c.tensors} tensors, ${formatBytes(c.size)}, ${formatDuration(r.seconds)}${r.pulled ? " (weights pulled first)" : ""}`,
    `from ${r.source.path}`,
    r.model.path,
  ].join("\n");
}
