import { type Command, Option } from "commander";
import type { EvalResult } from "../backends/eval/evaluate.js";
import type { MatchMode } from "../backends/eval/match.js";
import { UsageError } from "../core/errors.js";
import { action, collect, positiveInt } from "./action.js";
import { type BatchFlags, type RuntimeFlags, type SamplingFlags, addBatchOption, addRuntimeOptions, addSamplingOptions } from "./flags.js";

interface EvalFlags extends SamplingFlags, RuntimeFlags, BatchFlags {
  task?: string[];
  perplexity?: string;
  kldBase?: string;
  match: MatchMode;
  limit?: number;
  parallel?: number;
  report?: string;
  store: boolean;
}

export function register(program: Command): void {
  const cmd = program
    .command("eval")
    .description("Score one or more models on the same task files and compare them in one table")
    .argument("<models...>", "registered names, catalog names, .gguf files, ONNX folders or Hugging Face/GPTQ/AWQ folders (converted to GGUF once); MODEL+ADAPTER[:SCALE] adds a LoRA adapter (as --lora takes it) to one model")
    .option("--task <file.jsonl>", "questions to score (repeatable): generation or multiple choice, see docs/eval.md", collect)
    .option("--perplexity <file>", "perplexity of a text file, computed like llama-perplexity (chunks of --ctx tokens, default 512)")
    .option("--kld-base <model>", "with --perplexity: KL divergence of each model's next-token distributions from this model's")
    .addOption(new Option("--match <mode>", "how generated answers are compared with the expected ones").choices(["exact", "contains", "regex"]).default("exact"))
    .option("--limit <n>", "score only the first N questions of each task", positiveInt("--limit"))
    .option("--parallel <n>", "questions evaluated at once per model, as parallel sequences of one context (default 8)", positiveInt("--parallel"))
    .option("--report <file>", "also write a shareable report: FILE.md (Markdown) or FILE.html (self-contained, with charts)")
    .option("--no-store", "do not save the results with registered models");
  addSamplingOptions(cmd);
  addRuntimeOptions(cmd);
  addBatchOption(cmd);
  cmd.addHelpText(
    "after",
    `
Answers are greedy (temperature 0) and at most 256 tokens unless -t / -n say otherwise; with a
temperature, question i is sampled with seed + i. --lora adds the adapter to every model; --ctx is the
context of each of the --parallel sequences (default: what the longest question can need) and the
chunk size of --perplexity (default 512, or the model's training context if shorter). Results of registered and built-in models are saved with
the model (slm info, slm list --metrics); a model given as a file path is not stored.

--dtype picks the variant of every model, so all must be ONNX models; to pick one per model, or to
put GGUF and ONNX models in one table, name it per model: NAME:dtype (tiny-arith-onnx:q4).

Examples:
  slm eval tiny-arith --task test/fixtures/tiny-arith/data/add-eval.jsonl
  slm eval tiny-arith tiny-arith+test/fixtures/tiny-arith/gguf/lora-sub-f32.gguf --task test/fixtures/tiny-arith/data/sub-eval.jsonl
  slm eval tiny-arith tiny-arith-onnx:fp32 tiny-arith-onnx:q4 --task test/fixtures/tiny-arith/data/add-eval.jsonl
  slm eval qwen2.5-0.5b qwen2.5-0.5b-Q4_K_M --task qa.jsonl --match contains --report qa.html
  slm eval qwen2.5-0.5b-Q4_K_M qwen2.5-0.5b-Q8_0 --perplexity wiki.txt --kld-base qwen2.5-0.5b:F16`,
  );
  cmd.action(
    action(async (ctx, models: string[], flags: EvalFlags) => {
      const [{ planEval }, { runEval }, { writeReport, reportFormat }, { comparisonTable, textTable }, { parseGpu }] = await Promise.all([
        import("../backends/eval/plan.js"),
        import("../backends/eval/evaluate.js"),
        import("../backends/eval/report.js"),
        import("../backends/eval/table.js"),
        import("../backends/llama/runtime.js"),
      ]);
      if (flags.report && !reportFormat(flags.report)) throw new UsageError(`--report takes a .md or .html file name (got ${flags.report}).`);
      const render = await ctx.renderer();
      const backend = { signal: ctx.signal, onEvent: render.onEvent };
      const plan = await planEval({ models, tasks: flags.task, perplexity: flags.perplexity, kldBase: flags.kldBase, match: flags.match, limit: flags.limit, lora: flags.lora, dtype: flags.dtype }, backend);
      const { task: _t, perplexity: _p, kldBase: _k, report, lora: _l, gpu, ctx: contextSize, ...rest } = flags;
      const result = await runEval(plan, { ...rest, ctx: contextSize, gpu: parseGpu(gpu ?? "auto"), verbose: ctx.globals.verbose }, backend);
      const { storeError, ...scores } = result;
      const written = report ? await writeReport(scores, report).catch((err: unknown) => ({ error: err })) : undefined;
      const reportPath = written && "path" in written ? written.path : undefined;
      // Print the scores first, whatever failed to be written; then the failure sets the exit code.
      render.result({ ...scores, report: reportPath }, [textTable(comparisonTable(scores)), ...notes(scores, reportPath)].join("\n"));
      if (written && "error" in written) throw written.error;
      if (storeError) throw storeError;
    }),
  );
}

function notes(r: EvalResult, report: string | undefined): string[] {
  const lines: string[] = [];
  // The label, not the bare name: two variants of one ONNX model are stored apart (name:dtype).
  const stored = r.models.filter((m) => m.stored).map((m) => m.label);
  if (stored.length > 0) lines.push(`Saved with ${stored.join(", ")} (slm info shows them).`);
  for (const m of r.models.filter((x) => !x.stored)) lines.push(`Not saved: ${m.notStored}.`);
  if (report) lines.push(`Report: ${report}`);
  return lines;
}
