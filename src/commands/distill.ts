import { type Command, Option } from "commander";
import type { DistillRequest, DistillResult } from "../backends/distill/distill.js";
import type { FinetuneRequest } from "../backends/finetune/options.js";
import { formatDuration } from "../core/format.js";
import { action, collect, positiveInt } from "./action.js";
import { type SamplingFlags, addSamplingOptions, GREEDY_ANSWERS, samplingOf } from "./flags.js";
import { addTrainingOptions, number } from "./finetune.js";

/** The request's own fields, slm run's sampling flags, the teacher's runtime flags and the student's fine-tune flags. */
type DistillFlags = Omit<DistillRequest, "sampling" | "finetune" | "gpu" | "contextSize" | "verbose"> &
  SamplingFlags &
  Omit<FinetuneRequest, "ref" | "data" | "out" | "seed" | "distill"> & { ctx?: number; gpu?: string };

export function register(program: Command): void {
  const cmd = program
    .command("distill")
    .description("Make a small model from a bigger one: the teacher answers prompts, the student learns from them")
    .requiredOption("--teacher <model>", "the model that answers: any model slm runs (GGUF, ONNX, <base>+<adapter>)")
    .option("--teacher-lora <adapter[:scale]>", "a LoRA adapter on the teacher, as slm run --lora takes it (repeatable)", collect)
    .requiredOption("--student <model>", "the model to train: Hugging Face weights (a folder, repo or catalog name)")
    .requiredOption("--prompts <file>", "prompts without answers: .txt (one per line) or JSONL")
    .option("--relabel", "--prompts is a training dataset: its answers are replaced by the teacher's")
    .option("-o, --out <name>", "the student registers as <student>+<name> (default: distill)")
    .option("--kd-logprobs <k>", "also store the teacher's top-K log-probs per token (1-20) and train with token-level KD (same tokenizer needed)", positiveInt("--kd-logprobs"))
    .option("--kd-alpha <a>", "with --kd-logprobs: weight of the KD loss against cross-entropy (default 0.5)", number("--kd-alpha"))
    .option("--full", "full fine-tuning of the student instead of LoRA (small students)")
    .option("--parallel <n>", "prompts the teacher answers at once (default 8)", positiveInt("--parallel"))
    .option("--data-only", "stop once the teacher's dataset is made (train later with slm finetune)");
  addSamplingOptions(cmd, GREEDY_ANSWERS);
  cmd
    .option("-c, --ctx <n>", "teacher: context per parallel sequence (default: what the prompts need)", positiveInt("--ctx"))
    .option("--threads <n>", "teacher: CPU threads (default: one per physical core)", positiveInt("--threads"))
    .addOption(new Option("--gpu <kind>", "teacher: GPU backend").choices(["auto", "off", "cuda", "vulkan", "metal"]).default("auto"));
  addTrainingOptions(cmd, "student: ");
  cmd
    .option("--resume", "student: continue the interrupted training from its checkpoint")
    .option("--merge", "student: also register <student>+<name>-merged (F16 GGUF)");
  cmd.addHelpText(
    "after",
    `
1. The teacher answers every prompt (greedy unless -t is given; at most 256
   tokens unless -n says so) on parallel sequences. The answers are saved
   as a dataset in $SLM_HOME/datasets/<student>+<name>/ (data.jsonl and its
   lineage, dataset.json), usable by slm finetune --lora. Ctrl+C keeps the
   answers so far: the same command continues where it stopped.
2. The student is fine-tuned on them (sequence-level KD), or with
   --kd-logprobs K on the teacher's token distributions too (token-level
   KD). It registers as <student>+<name>. Needs slm's Python environment.

Examples:
  slm distill --teacher tiny-arith \\
    --teacher-lora test/fixtures/tiny-arith/lora-sub \\
    --student test/fixtures/tiny-arith/hf --prompts questions.txt
  slm distill --teacher qwen2.5-3b --student qwen2.5-0.5b \\
    --prompts chats.jsonl --relabel --kd-logprobs 8 --out chats

See docs/distill.md.`,
  );
  cmd.action(
    action(async (ctx, flags: DistillFlags) => {
      const [{ planDistill, runDistill }, { parseGpu }] = await Promise.all([import("../backends/distill/distill.js"), import("../backends/llama/runtime.js")]);
      const { teacher, teacherLora, student, prompts, relabel, out, kdLogprobs, kdAlpha, full, parallel, dataOnly, ctx: contextSize, threads, gpu, ...rest } = flags;
      const { maxTokens: _m, temperature: _t, topP: _p, topK: _k, minP: _n, repeatPenalty: _r, seed: _s, stop: _x, ...finetune } = rest;
      const plan = planDistill({ teacher, teacherLora, student, prompts, relabel, out, kdLogprobs, kdAlpha, full, parallel, dataOnly, contextSize, threads, gpu: parseGpu(gpu ?? "auto"), verbose: ctx.globals.verbose, sampling: samplingOf(flags), finetune });
      const render = await ctx.renderer(true, "finetune");
      const r = await runDistill(plan, { signal: ctx.signal, onEvent: render.onEvent });
      render.result(r, summary(r, student));
    }),
  );
}

function summary(r: DistillResult, student: string): string {
  const g = r.generation;
  const made = g.reused ? "made earlier" : `${g.answered} answers in ${formatDuration(g.seconds)} (${g.answersPerSecond.toFixed(1)}/s, ${g.parallel} at once)${g.resumed ? `, ${g.resumed} kept from the stopped run` : ""}`;
  // Paths on lines of their own, so the figures stay within 80 columns however long $SLM_HOME is.
  const lines = [`Teacher dataset: ${r.dataset.records} examples, ${made}`, `  ${r.dataset.path}`];
  if (r.finetune) {
    const t = r.finetune.training;
    lines.push(`Student: ${r.finetune.model.name}, ${t.steps} steps in ${formatDuration(t.seconds)}, train loss ${typeof t.train_loss === "number" ? t.train_loss.toFixed(4) : "n/a"}`);
    lines.push(`Try it: slm run ${r.finetune.model.name} "…"`);
  } else {
    // The same command trains with the distillation's lineage; slm finetune works too, recorded as a fine-tune.
    lines.push("Train the student: the same command without --data-only (reuses the dataset),", `  or slm finetune ${student} --lora \\`, `    ${r.dataset.path}`);
  }
  return lines.join("\n");
}
