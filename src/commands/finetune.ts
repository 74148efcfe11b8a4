import { type Command, InvalidArgumentError, Option } from "commander";
import type { FinetuneResult } from "../backends/finetune/finetune.js";
import type { FinetuneRequest } from "../backends/finetune/options.js";
import type { PreparedRun } from "../backends/finetune/prepare.js";
import { UsageError } from "../core/errors.js";
import { formatBytes, formatDuration } from "../core/format.js";
import { wrapCommand } from "../ui/helpWrap.js";
import { type CommandContext, action, positiveInt } from "./action.js";

type FinetuneFlags = Omit<FinetuneRequest, "ref" | "data"> & { lora?: string; prepare?: boolean; register?: string };

/** A number flag (2e-4, 0.05…); ranges are checked by the backend, with the flag's name. */
export function number(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === "" || !Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number.`);
    return n;
  };
}

/**
 * The training options `slm finetune` and `slm distill` (for its student) share, declared once so the
 * two stay alike; `who` prefixes each description ("student: ") where a command has other models too.
 */
export function addTrainingOptions(cmd: Command, who = ""): Command {
  return cmd
    .option("--epochs <n>", `${who}passes over the data (default 3)`, number("--epochs"))
    .option("--max-steps <n>", `${who}stop after this many optimizer steps (overrides --epochs)`, positiveInt("--max-steps"))
    .option("--lr <rate>", `${who}learning rate (default 2e-4)`, number("--lr"))
    .option("--rank <r>", `${who}LoRA rank (default 16)`, positiveInt("--rank"))
    .option("--alpha <a>", `${who}LoRA alpha (default 32)`, number("--alpha"))
    .option("--dropout <p>", `${who}LoRA dropout (default 0)`, number("--dropout"))
    .option("--target-modules <list>", `${who}modules to adapt: "all-linear" (default) or names, e.g. q_proj,v_proj`)
    .option("--batch-size <n>", `${who}examples per device step (default 8)`, positiveInt("--batch-size"))
    .option("--grad-accum <n>", `${who}steps accumulated per optimizer step (default 1)`, positiveInt("--grad-accum"))
    .option("--max-seq-len <n>", `${who}longest example in tokens; longer ones are cut (default: model context, at most 2048)`, positiveInt("--max-seq-len"))
    .option("--packing", `${who}pack several short examples into each sequence`)
    .option("--train-on-prompt", `${who}learn from prompts and user turns too (default: answers only)`)
    .addOption(new Option("--device <device>", `${who}where to train`).choices(["auto", "cpu", "cuda"]).default("auto"))
    .option("--gpus <n>", `${who}train data-parallel on N GPUs of this machine, --batch-size examples on each (default 1; with --device cpu: N CPU processes)`, positiveInt("--gpus"));
}

export function register(program: Command): void {
  const cmd = program
    .command("finetune")
    .description("Train a LoRA adapter with PEFT (Python) and register <model>+<name>: the base GGUF with the adapter as GGUF (--full: every weight, registered as its own GGUF)")
    .argument("[model]", "catalog name, registered name, Hugging Face repo or local HF model folder")
    .option("--lora <data.jsonl>", "training data (JSONL: messages, alpaca, sharegpt, prompt/completion or text; required)")
    .option("--eval-data <file>", "evaluation data in the same formats")
    .option("--val-split <fraction>", "hold out this fraction of the training data for evaluation (e.g. 0.05)", number("--val-split"));
  addTrainingOptions(cmd);
  cmd
    .option("--qlora", "train on the base quantized to 4 bits (needs a CUDA GPU and bitsandbytes)")
    .option("--full", "full fine-tuning: train every weight (no LoRA) and register the result as an F16 GGUF of its own")
    .option("--kd-alpha <a>", "for data with the teacher's log-probabilities (slm distill --kd-logprobs): loss = a·KD + (1 − a)·CE (default 0.5)", number("--kd-alpha"))
    .option("--seed <n>", "random seed for data order, --val-split and initialisation (default 42)", number("--seed"))
    .option("-o, --out <name>", "name of the fine-tune: registered as <model>+<name> (default: the data file's name)")
    .option("--resume", "continue the interrupted run of the same name from its last checkpoint")
    .option("--merge", "also merge the adapter into the weights and register <model>+<name>-merged (F16 GGUF)")
    .option("--prepare", "make the run's folder (data, config, recipe) and print the torchrun command that trains it, across machines")
    .option("--register <run-dir>", "register the adapter a torchrun run trained in a folder made by --prepare (no <model> or --lora)")
    .addHelpText(
      "after",
      `
Needs slm's Python environment (slm setup python) with torch, transformers and peft; a GPU when the
model is not tiny. The data is checked first: a bad line is reported with its file and line number.
Conversations are rendered with the model's own chat template, and the loss covers the answers only.
Outputs: $SLM_HOME/runs/<model>+<name>/ (data, checkpoints, the PEFT adapter), and the registered
model <model>+<name>, used by name: slm run <model>+<name> "…". Ctrl+C saves a checkpoint; --resume
continues from it.

Examples:
  slm finetune test/fixtures/tiny-arith/hf --lora test/fixtures/tiny-arith/data/sub-train.jsonl --out sub
  slm finetune qwen2.5-0.5b --lora chats.jsonl --val-split 0.05 --epochs 2 --merge
  slm finetune qwen2.5-0.5b --lora chats.jsonl --out chats --resume
  slm finetune test/fixtures/tiny-arith/hf --lora sub-train.jsonl --full --lr 1e-4 --out sub-full
  slm finetune llama-3.2-1b --lora chats.jsonl --gpus 4 --batch-size 8     (32 examples per step)
  slm finetune llama-3.2-1b --lora chats.jsonl --out chats --prepare          (then torchrun, see docs)
  slm finetune --register ~/.slm/runs/llama-3.2-1b+chats`,
    )
    .action(
      action(async (ctx, model: string | undefined, flags: FinetuneFlags) => {
        if (flags.register !== undefined) return registerRun(ctx, model, flags);
        if (model === undefined || flags.lora === undefined) throw new UsageError(`${model === undefined ? "Missing the <model> to fine-tune" : "Missing --lora <data.jsonl>"}.`, { hint: "slm finetune <model> --lora <data.jsonl>; see slm finetune --help." });
        const [{ planFinetune }, { runFinetune }] = await Promise.all([import("../backends/finetune/plan.js"), import("../backends/finetune/finetune.js")]);
        const { lora, prepare, register: _, ...rest } = flags;
        // Options and data are checked before anything starts: Python, a download, or a conversion.
        const plan = planFinetune({ ...rest, ref: model, data: lora });
        const render = await ctx.renderer(true, "finetune");
        if (prepare) {
          const { prepareFinetune } = await import("../backends/finetune/prepare.js");
          const p = await prepareFinetune(plan, { signal: ctx.signal, onEvent: render.onEvent });
          return render.result(p, preparedSummary(p));
        }
        const r = await runFinetune(plan, { signal: ctx.signal, onEvent: render.onEvent });
        render.result(r, summary(r));
      }),
    );
}

/** A loss as the recipe reported it: null when it had none (a run resumed at its last step). */
const loss = (v: number | null | undefined) => (typeof v === "number" ? v.toFixed(4) : "n/a");

function summary(r: FinetuneResult): string {
  const t = r.training;
  const lines = [
    `${r.model.name}: train loss ${loss(t.train_loss)}${t.eval_loss !== null ? `, eval loss ${loss(t.eval_loss)}` : ""}, ${t.steps} steps (${t.epochs} epoch${t.epochs === 1 ? "" : "s"}), ${t.tokens.toLocaleString("en-US")} tokens in ${formatDuration(t.seconds)}${typeof t.peak_gpu_mem_gib === "number" ? `, peak GPU memory ${t.peak_gpu_mem_gib.toFixed(1)} GiB` : ""}${t.resumed_from ? ` (resumed from ${t.resumed_from})` : ""}`,
    ...(r.adapterGguf === null
      ? [`  GGUF          ${r.model.path} (${formatBytes(r.model.size)})`, `  HF model      ${r.modelDir}`]
      : [`  base GGUF     ${r.model.path}`, `  GGUF adapter  ${r.adapterGguf} (${formatBytes(r.model.files.find((f) => f.path === r.adapterGguf)?.size ?? 0)})`, `  PEFT adapter  ${r.peftAdapter}`]),
    `  run folder    ${r.runDir}`,
  ];
  const kd = t.kd;
  if (kd) lines.push(`  distillation  ${kd.examples} examples on the teacher's log-probabilities${kd.misaligned ? `, ${kd.misaligned} on cross-entropy alone (their tokens did not line up)` : ""}`);
  if (r.merged) lines.push(`  merged        ${r.merged.name}: ${r.merged.path}`);
  lines.push(`Try it: slm run ${r.model.name} "…"`);
  return lines.join("\n");
}

/** `--register RUN_DIR`: a separate mode that takes no <model> and no training flags. */
async function registerRun(ctx: CommandContext, model: string | undefined, flags: FinetuneFlags): Promise<void> {
  const extra = Object.keys(flags).filter((k) => k !== "register" && k !== "device" && k !== "json");
  if (model !== undefined || extra.length > 0) throw new UsageError("--register RUN_DIR takes no <model> and no training options: the run folder holds them.", { hint: "slm finetune --register ~/.slm/runs/<base>+<name>" });
  const { registerPreparedRun } = await import("../backends/finetune/registerRun.js");
  const render = await ctx.renderer(true, "finetune");
  const r = await registerPreparedRun(flags.register!, { signal: ctx.signal, onEvent: render.onEvent });
  render.result(r, [`${r.model.name}: train loss ${loss(r.training.train_loss)}, ${r.training.steps} steps`, `  ${r.adapterGguf ? "GGUF adapter " : "GGUF         "} ${r.adapterGguf ?? r.model.path}`, `  run folder    ${r.runDir}`, `Try it: slm run ${r.model.name} "…"`].join("\n"));
}

function preparedSummary(p: PreparedRun): string {
  return [
    `Prepared ${p.name} in ${p.runDir}`,
    "Every node needs this folder and the base model at these paths (or on shared",
    `storage): ${p.hf}`,
    "and Python with torch, transformers and peft. On each node of two:",
    // Continued with " \\" so that it still pastes into a shell and fits an 80-column terminal.
    ...wrapCommand(`  torchrun ${p.torchrun.map((a) => (/[\s<>']/.test(a) ? `'${a}'` : a)).join(" ")}`, 80),
    "Add --resume to continue from the last checkpoint. Then, where the folder is:",
    `  slm finetune --register ${p.runDir}`,
  ].join("\n");
}
