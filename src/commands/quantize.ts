import type { Command } from "commander";
import type { QuantizeRequest, QuantizeResult } from "../backends/quantize/quantize.js";
import { formatBytes, formatDuration } from "../core/format.js";
import { action, positiveInt } from "./action.js";
import { ensureLlamaCppTools } from "./setup.js";
import { type SweepFlags, addSweepOptions, rejectSweepFlags, sweepCommand } from "./quantizeSweep.js";
import { type Method, addWeightsOptions, rejectOtherMethodFlags, weightsCommand } from "./quantizeWeights.js";

export type QuantizeFlags = Omit<QuantizeRequest, "ref" | "bits" | "lowBitWithoutImatrix"> & { bits?: string; yes?: boolean };

export function register(program: Command): void {
  const cmd = program
    .command("quantize")
    .description("Quantize a model with llama.cpp (GGUF, default Q4_K_M), GPTQ or AWQ, and register the result with its lineage")
    .argument("<model>", "registered name, catalog name, a .gguf file (F16/BF16/F32), a Hugging Face folder or org/repo (gptq/awq: Hugging Face weights only)")
    .option("-b, --bits <n>", "llamacpp: the usual type for a size, 2=Q2_K 3=Q3_K_M 4=Q4_K_M 5=Q5_K_M 6=Q6_K 8=Q8_0; gptq: 2, 4 or 8 (default 4); awq: 4")
    .option("-t, --type <type>", "any type llama-quantize knows (Q4_K_M, Q8_0, IQ4_XS…); default Q4_K_M. With --method awq: AWQ-scaled weights made into this GGUF type")
    .option("--imatrix <file>", "importance matrix made by llama-imatrix")
    .option("--calibration <file>", "text, or chat JSONL rendered with the model's template: llamacpp computes an importance matrix from it; gptq/awq (required) fit the weights to it")
    .option("--chunks <n>", "with --calibration: most chunks llama-imatrix reads (default: all)", positiveInt("--chunks"))
    .option("--output-tensor-type <type>", "tensor type for output.weight (e.g. q8_0, f16)")
    .option("--token-embedding-type <type>", "tensor type for the token embeddings (e.g. q8_0)")
    .option("--pure", "every tensor in the one type: no K-quant mixture")
    .option("--threads <n>", "CPU threads (default: every core, or SLM_THREADS)", positiveInt("--threads"))
    .option("--allow-requantize", "accept an already-quantized source (quality suffers)")
    .option("-o, --out <name>", "register under this name (default <model>-<type>, <model>-GPTQ-<bits>bit, <model>-AWQ-4bit, <model>-AWQ-<type>)")
    .option("-y, --yes", "build llama.cpp's tools without asking if they are missing");
  addWeightsOptions(cmd);
  addSweepOptions(cmd);
  cmd
    .addHelpText(
      "after",
      `
IQ types and types of 3 bits or fewer need an importance matrix (--imatrix or --calibration).
A Hugging Face model (safetensors) is converted to F16 with llama.cpp's convert_hf_to_gguf.py first,
which needs slm's Python environment (slm setup python, or SLM_PYTHON).
The result lives in $SLM_HOME/models/<name>/ and is used by name: slm run <name>, slm info <name>.
Ctrl+C, a failing tool or a full disk leave no file and no registry entry.

Examples:
  slm quantize tiny-arith                                  Q4_K_M → tiny-arith-Q4_K_M
  slm quantize ./model-f16.gguf --bits 8 --out my-model-q8
  slm quantize tiny-arith --type Q2_K --calibration test/fixtures/tiny-arith/data/add-train.jsonl

--method gptq and --method awq make the checkpoints GPU servers load (vLLM, TGI, transformers, SGLang)
from Hugging Face weights: a folder, a pulled --format hf model, org/repo (pulled now), or a fine-tune
merged with --merge. Both fit the quantized weights to --calibration data, one decoder block at a time
(CUDA when torch sees a GPU, else the CPU); both need slm's Python environment (slm setup python).
GPTQ (Frantar et al. 2022): 2, 4 or 8 bits, error feedback column by column; --desc-act, --no-sym, --damp.
AWQ (Lin et al. 2023): 4 bits, per-channel scales from the activations; Llama-style architectures.
slm run/chat/serve use them through a GGUF converted once (<name>-F16). A GGUF input is refused: get the
original weights with slm pull <org/repo> --format hf.
  slm quantize tiny-arith --method gptq --calibration test/fixtures/tiny-arith/data/add-train.jsonl
      → tiny-arith-GPTQ-4bit
  slm quantize ./my-model --method gptq --bits 8 --group-size -1 --desc-act --calibration notes.txt
  slm quantize tiny-arith --method awq --calibration test/fixtures/tiny-arith/data/add-train.jsonl
      → tiny-arith-AWQ-4bit
  slm quantize tiny-arith --method awq --type Q4_K_M --calibration test/fixtures/tiny-arith/data/add-train.jsonl
      → tiny-arith-AWQ-Q4_K_M (a GGUF: AWQ's scales on the F16 weights, then llama-quantize)

--sweep makes each listed type (put them after the model), measures it against the source on --text
(KLD, same top token, perplexity, generation speed, --task scores), marks the Pareto-optimal types and
recommends the smallest one whose mean KLD is under --max-kld or whose task scores stay within
--max-drop of the source's. Without --calibration or --imatrix, Q3_K and Q2_K are made with a warning.
  slm quantize tiny-arith --sweep Q8_0 Q4_K_M Q2_K --text test/fixtures/tiny-arith/data/eval-text.txt \
      --task test/fixtures/tiny-arith/data/add-eval.jsonl --limit 50 --keep best --report sweep.html`,
    )
    .action(
      action(async (ctx, model: string, allFlags: QuantizeFlags & SweepFlags & { method: Method }) => {
        rejectOtherMethodFlags(cmd, allFlags.method);
        if (allFlags.method !== "llamacpp") return weightsCommand(ctx, model, { ...allFlags, method: allFlags.method });
        if (allFlags.sweep !== undefined) return sweepCommand(ctx, model, allFlags);
        const { sweep: _s, text: _x, task: _t, limit: _l, parallel: _p, maxKld: _k, maxDrop: _d, keep: _e, report: _r, method: _m, ...flags } = allFlags;
        rejectSweepFlags(allFlags);
        const { planQuantize, runQuantize } = await import("../backends/quantize/quantize.js");
        const { yes, bits, ...rest } = flags;
        // Everything that needs no tool is checked first, so a typo never waits for a 10-minute build.
        const plan = await planQuantize({ ...rest, ref: model, bits: bits === undefined ? undefined : Number(bits) });
        const tools = await ensureLlamaCppTools(ctx, plan.tools, !!yes);
        const render = await ctx.renderer();
        const r = await runQuantize(plan, { tools }, { signal: ctx.signal, onEvent: render.onEvent });
        render.result(r, summary(r));
      }),
    );
}

function summary(r: QuantizeResult): string {
  const ratio = r.sizeBefore > 0 ? ` (${Math.round((r.sizeAfter / r.sizeBefore) * 100)} %)` : "";
  const bpw = r.bitsPerWeight !== undefined ? `, ${r.bitsPerWeight.toFixed(2)} bits per weight${r.source.bitsPerWeight !== undefined ? ` (was ${r.source.bitsPerWeight.toFixed(2)})` : ""}` : "";
  const lines = [
    `${r.model.name}: ${r.type}, ${formatBytes(r.sizeBefore)} → ${formatBytes(r.sizeAfter)}${ratio}${bpw}, ${formatDuration(r.seconds)}`,
    r.model.path,
  ];
  if (r.imatrix) {
    const c = r.imatrix.calibration;
    lines.push(`importance matrix: ${c ? `from ${c.file}${c.format === "chat-jsonl" ? ` (${c.examples} conversations)` : ""}` : r.imatrix.source}`);
  }
  return lines.join("\n");
}
