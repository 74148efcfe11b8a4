import { type Command, InvalidArgumentError, Option } from "commander";
import type { PruneRequest } from "../backends/prune/plan.js";
import type { PruneResult } from "../backends/prune/run.js";
import { formatBytes, formatDuration } from "../core/format.js";
import { action, positiveInt } from "./action.js";

/** The flags are the request's settings, named alike. */
type PruneFlags = Omit<PruneRequest, "ref">;

function share(value: string): number {
  const n = Number(value.endsWith("%") ? Number(value.slice(0, -1)) / 100 : value);
  if (value.trim() === "" || !(n > 0 && n < 1)) throw new InvalidArgumentError("--ffn must be a share between 0 and 1 (0.25) or a percentage (25%).");
  return n;
}

function rate(value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !(n > 0)) throw new InvalidArgumentError("--heal-lr must be a number above 0.");
  return n;
}

export function register(program: Command): void {
  program
    .command("prune")
    .description("Make a smaller model by dropping the decoder blocks or FFN channels that matter least on calibration data, and register it")
    .argument("<model>", "Hugging Face weights: a folder, a model pulled with --format hf, a catalog name, org/repo, or a merged fine-tune")
    .option("--layers <k>", "drop the K blocks that change the hidden state least (ShortGPT block influence)", positiveInt("--layers"))
    .option("--ffn <ratio>", "remove this share of every block's FFN channels, those with the smallest activations (Minitron), e.g. 0.25", share)
    .option("--calibration <file>", "text or chat JSONL to measure on (default: slm's own mixed text; use data like the model's real use)")
    .option("--samples <n>", "calibration windows (default 32)", positiveInt("--samples"))
    .option("--seq-len <n>", "tokens per window (default 256, at most the model's context)", positiveInt("--seq-len"))
    .option("--heal <file>", "then fine-tune all weights briefly on this dataset (the JSONL shapes slm finetune reads, or text)")
    .option("--heal-distill", "then distil from the unpruned model (KL on the calibration windows)")
    .option("--heal-steps <n>", "healing steps (default 100)", positiveInt("--heal-steps"))
    .option("--heal-lr <rate>", "healing learning rate (default 1e-4)", rate)
    .addOption(new Option("--device <device>", "where torch runs (default auto: CUDA when torch sees a GPU)").choices(["auto", "cpu", "cuda"]))
    .option("--threads <n>", "CPU threads for torch (default: every core, or SLM_THREADS)", positiveInt("--threads"))
    .option("-o, --out <name>", "register under this name (default <model>-pruned-L<blocks> or -pruned-ffn<width>)")
    .addHelpText(
      "after",
      `
Depth (--layers K): each block's influence is 1 - the mean cosine between its
input and output hidden states over the calibration tokens; the K lowest go.
Width (--ffn R): each FFN channel's importance is the size of its activation;
every block keeps its most important ones, as many in each, a multiple of 32
(slm warns when it is not a multiple of 256, which K-quants need). One of the
two per run. The result is a Hugging Face folder (config.json updated) that
slm run, slm quantize and slm convert take like any other; slm info shows
what was removed, the scores and the calibration file's sha256. Needs slm's
Python environment (slm setup python). Ctrl+C or a failure leaves no folder
and no registry entry.

Examples:
  slm prune ./my-model --layers 4 --calibration chats.jsonl
  slm prune tiny-arith --layers 1 --heal-distill --out arith-3
  slm prune tiny-arith --ffn 0.25 --heal train.jsonl
  slm quantize arith-3 --type Q4_K_M`,
    )
    .action(
      action(async (ctx, model: string, f: PruneFlags) => {
        const [{ planPrune }, { runPrune }] = await Promise.all([import("../backends/prune/plan.js"), import("../backends/prune/run.js")]);
        // Healing is training: the fine-tune view folds its loss per step into one line and a curve.
        const render = await ctx.renderer(true, "finetune");
        const events = { signal: ctx.signal, onEvent: render.onEvent };
        const plan = await planPrune({ ref: model, ...f }, events);
        const r = await runPrune(plan, events);
        render.result(r, summary(r));
      }),
    );
}

/** Short lines: the summary is plain text, which an 80-column terminal would wrap mid-word. */
function summary(r: PruneResult): string {
  const p = r.recipe;
  const cut = p.method === "layers"
    ? `dropped block${p.removed_layers!.length > 1 ? "s" : ""} ${p.removed_layers!.join(", ")} of ${p.layers_before}`
    : `FFN ${p.intermediate_before} → ${p.intermediate_after} channels per block`;
  const heal = p.heal ? `healed (${p.heal.mode}, ${p.heal.steps} steps): loss ${p.heal.first_loss.toFixed(3)} → ${p.heal.last_loss.toFixed(3)}` : undefined;
  return [
    `${r.model.name}: ${cut}, ${formatDuration(r.seconds)}`,
    `${(p.parameters_before / 1e6).toFixed(1)}M → ${(p.parameters / 1e6).toFixed(1)}M parameters, ${formatBytes(r.model.size)}`,
    ...(heal ? [heal] : []),
    r.model.path,
    `run it: slm run ${r.model.name} (converted to GGUF once)`,
  ].join("\n");
}
