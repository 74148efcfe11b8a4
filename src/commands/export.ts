import { type Command, InvalidArgumentError, Option } from "commander";
import type { ExportResult } from "../backends/export/types.js";
import { formatBytes, formatDuration } from "../core/format.js";
import { action, collect, positiveInt } from "./action.js";

interface ExportFlags {
  format: "onnx";
  dtype?: string[];
  out?: string;
  opset?: number;
  threads?: number;
}

function opset(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n)) throw new InvalidArgumentError("--opset must be a whole number.");
  return n;
}

export function register(program: Command): void {
  program
    .command("export")
    .description("Export Hugging Face weights to ONNX (the Optimum / transformers.js layout: fp32, fp16, q8, q4) and register the folder")
    .argument("<model>", "a Hugging Face folder, a model pulled with --format hf, a catalog name, org/repo (pulled with --format hf first), a fine-tune, or BASE+PEFT-FOLDER (exported merged)")
    .addOption(new Option("--format <format>", "what to export to").choices(["onnx"]).makeOptionMandatory())
    .option("--dtype <dtype>", "fp32 (onnx/model.onnx), fp16, q8 (dynamic int8, model_quantized.onnx) or q4 (4-bit MatMulNBits, model_q4.onnx); repeat or comma-separate for several (default fp32)", collect)
    .option("-o, --out <name>", "register under this name (default <model>-onnx); an earlier export of the same model gains the dtypes")
    .option("--opset <n>", "ONNX opset of the graph, 14 to 20 (default 17)", opset)
    .option("--threads <n>", "CPU threads for torch and onnxruntime (default: every core, or SLM_THREADS)", positiveInt("--threads"))
    .addHelpText(
      "after",
      `
One folder per model, laid out as transformers.js and Optimum lay it out:
config.json, generation_config.json, tokenizer.json (written by transformers,
also for models that ship only tokenizer.model), the chat template, and
onnx/model<suffix>.onnx per dtype; each later --dtype adds its file to the
same folder. The graph takes input_ids, attention_mask, position_ids and
past_key_values.N.key/value, and gives logits and present.N.key/value. Every
file is run in onnxruntime against the torch model before it is kept.
Needs slm's Python environment (slm setup python) with onnx and onnxruntime.
Ctrl+C or a failure leaves no new file and no registry entry.

Examples:
  slm export tiny-arith --format onnx            → tiny-arith-onnx (fp32)
  slm export tiny-arith --format onnx --dtype q4 adds onnx/model_q4.onnx
  slm export ./my-model --format onnx --dtype fp32,q8 --out my-model-web
  slm export tiny-arith+sub --format onnx        a fine-tune, merged first
  slm run tiny-arith-onnx:q4 "12+34"`,
    )
    .action(
      action(async (ctx, model: string, flags: ExportFlags) => {
        const [{ planExport, parseDtypes }, { runExport }] = await Promise.all([import("../backends/export/plan.js"), import("../backends/export/run.js")]);
        const render = await ctx.renderer();
        const events = { signal: ctx.signal, onEvent: render.onEvent };
        const plan = await planExport({ ref: model, format: flags.format, dtypes: parseDtypes(flags.dtype), out: flags.out, opset: flags.opset, threads: flags.threads }, events);
        const r = await runExport(plan, events);
        render.result(r, summary(r));
      }),
    );
}

/** Short lines: the summary is plain text, which an 80-column terminal would wrap mid-word. */
function summary(r: ExportResult): string {
  const files = r.recipe.files.map((f) => `${f.dtype} ${formatBytes(f.bytes)}`).join(", ");
  const all = r.model.onnx?.dtypes ?? [];
  return [
    `${r.model.name}: ONNX, opset ${r.recipe.opset}, ${formatDuration(r.seconds)}, from ${r.source.name}`,
    r.addedToExisting ? `added ${files}; it now has ${all.join(", ")}` : files,
    r.model.path,
    `run it: slm run ${r.model.name}${r.added.length > 1 || r.addedToExisting ? `:${r.added[r.added.length - 1]}` : ""}`,
  ].join("\n");
}
