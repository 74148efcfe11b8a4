import { type Command, InvalidArgumentError, Option } from "commander";
import type { AwqGgufResult } from "../backends/quantize/awqGguf.js";
import type { WeightsDevice, WeightsMethod, WeightsRequest } from "../backends/quantize/weights.js";
import type { WeightsResult } from "../backends/quantize/weightsRun.js";
import { UsageError } from "../core/errors.js";
import { formatBytes, formatDuration } from "../core/format.js";
import { type CommandContext, positiveInt } from "./action.js";
import { ensureLlamaCppTools } from "./setup.js";

/** `slm quantize --method gptq|awq` (docs/quantize.md, "GPTQ and AWQ"). */
export type Method = "llamacpp" | WeightsMethod;

/** First in --help: it decides which of the other flags apply. */
export function methodOption(): Option {
  return new Option("--method <method>", "llamacpp: a GGUF for llama.cpp; gptq or awq: a GPTQ/AWQ checkpoint of Hugging Face weights for GPU servers").choices(["llamacpp", "gptq", "awq"]).default("llamacpp");
}

export function addWeightsOptions(cmd: Command): void {
  cmd
    .option("--group-size <n>", "gptq/awq: weights sharing one scale and zero (default 128; -1: one group per output channel)", groupSize)
    .option("--desc-act", "gptq: act-order, the columns with the largest activations quantized first (default off)")
    .option("--sym", "gptq: symmetric grid, no zero point (the default)")
    .option("--no-sym", "gptq: asymmetric grid with a zero point per group")
    .option("--damp <f>", "gptq: dampening, the share of the Hessian's mean diagonal added to it (default 0.01)", damp)
    .option("--samples <n>", "gptq/awq: calibration windows used (default 128)", positiveInt("--samples"))
    .option("--seq-len <n>", "gptq/awq: tokens per calibration window (default 512, at most the model's context)", positiveInt("--seq-len"))
    .addOption(new Option("--device <device>", "gptq/awq: where each decoder block is quantized (default auto: CUDA when torch sees a GPU)").choices(["auto", "cpu", "cuda"]));
}

function groupSize(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || (n < 1 && n !== -1)) throw new InvalidArgumentError("--group-size must be a positive whole number, or -1 for per-channel scales.");
  return n;
}

function damp(value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !(n > 0 && n <= 1)) throw new InvalidArgumentError("--damp must be more than 0 and at most 1.");
  return n;
}

/** The flags each method takes besides --method, --bits, --calibration, --threads and --out. */
const GPTQ_ONLY = ["descAct", "sym", "damp"];
const WEIGHTS = ["groupSize", "samples", "seqLen", "device"];
const LLAMACPP_ONLY = ["imatrix", "chunks", "allowRequantize", "sweep", "text", "task", "limit", "parallel", "maxKld", "maxDrop", "keep", "report"];
/** llama-quantize's own flags: llamacpp's, and AWQ's when it makes a GGUF (--type). */
const GGUF = ["type", "outputTensorType", "tokenEmbeddingType", "pure", "yes"];

function applies(key: string, method: Method, ggufType: boolean): boolean {
  if (GPTQ_ONLY.includes(key)) return method === "gptq";
  if (WEIGHTS.includes(key)) return method !== "llamacpp";
  if (LLAMACPP_ONLY.includes(key)) return method === "llamacpp";
  if (GGUF.includes(key)) return method === "llamacpp" || (method === "awq" && (key === "type" || ggufType));
  return true;
}

/** A flag of another method is refused, never accepted and ignored. */
export function rejectOtherMethodFlags(cmd: Command, method: Method): void {
  const opts = cmd.opts() as Record<string, unknown>;
  const given = (key: string) => cmd.getOptionValueSource(key) === "cli";
  const wrong = Object.keys(opts).filter((k) => given(k) && !applies(k, method, given("type")));
  if (wrong.length === 0) return;
  const flag = (k: string) => (k === "sym" && opts.sym === false ? "--no-sym" : (cmd.options.find((o) => o.attributeName() === k)?.long ?? k));
  const names = wrong.map(flag);
  const awqType = method === "awq" && wrong.some((k) => GGUF.includes(k));
  throw new UsageError(`${names.join(", ")} ${names.length > 1 ? "do" : "does"} not apply to --method ${method}.`, {
    hint: awqType ? "llama-quantize's flags go with --method awq --type TYPE (AWQ made into a GGUF)." : "`slm quantize --help` lists the flags of each method.",
  });
}

/** The command's flags: the request's settings, with --bits as typed and --method before it is narrowed. */
export type WeightsFlags = Omit<WeightsRequest, "ref" | "method" | "bits"> & { method: Method; bits?: string; yes?: boolean };

export async function weightsCommand(ctx: CommandContext, model: string, f: WeightsFlags & { method: WeightsMethod }): Promise<void> {
  const [{ planWeights }, { runWeights }] = await Promise.all([import("../backends/quantize/weights.js"), import("../backends/quantize/weightsRun.js")]);
  const bits = f.bits === undefined ? undefined : Number(f.bits);
  if (bits !== undefined && !Number.isInteger(bits)) throw new UsageError(`--bits must be a whole number (got "${f.bits}").`);
  // Picked one by one: the command's other flags (the llama.cpp method's, refused when given) stay out of the request.
  const req: WeightsRequest = {
    ref: model, method: f.method, bits, type: f.type, groupSize: f.groupSize, descAct: f.descAct, sym: f.sym, damp: f.damp, calibration: f.calibration,
    samples: f.samples, seqLen: f.seqLen, device: f.device, threads: f.threads, out: f.out, outputTensorType: f.outputTensorType, tokenEmbeddingType: f.tokenEmbeddingType, pure: f.pure,
  };
  const render = await ctx.renderer();
  const plan = await planWeights(req, { signal: ctx.signal, onEvent: render.onEvent });
  if (plan.ggufType) {
    const tools = await ensureLlamaCppTools(ctx, ["llama-quantize"], !!f.yes);
    const { runAwqGguf } = await import("../backends/quantize/awqGguf.js");
    const r = await runAwqGguf(plan, tools, { signal: ctx.signal, onEvent: render.onEvent });
    return render.result(r, awqGgufSummary(r));
  }
  const r = await runWeights(plan, { signal: ctx.signal, onEvent: render.onEvent });
  render.result(r, weightsSummary(r));
}

function weightsSummary(r: WeightsResult): string {
  const q = r.model.quantization!;
  const what = q.method === "gptq" ? `GPTQ ${q.bits}-bit, ${q.groupSize === -1 ? "per channel" : `group ${q.groupSize}`}${q.descAct ? ", act-order" : ""}${q.sym ? "" : ", asymmetric"}` : `AWQ ${q.bits}-bit, ${q.groupSize === -1 ? "per channel" : `group ${q.groupSize}`}`;
  const ratio = r.source.size > 0 ? ` (${Math.round((r.model.size / r.source.size) * 100)} %)` : "";
  // Short lines: the summary is plain text, which an 80-column terminal would wrap mid-word.
  return [
    `${r.model.name}: ${what}, ${formatBytes(r.source.size)} → ${formatBytes(r.model.size)}${ratio}, ${formatDuration(r.seconds)}`,
    `calibration: ${r.recipe.calibration_tokens.toLocaleString("en-US")} tokens, on ${r.recipe.device}`,
    r.model.path,
    `run it: slm run ${r.model.name} (converted to GGUF once)`,
    "or serve the folder with vLLM, TGI or transformers",
  ].join("\n");
}

function awqGgufSummary(r: AwqGgufResult): string {
  const g = r.gguf;
  return [`${g.model.name}: AWQ-scaled weights (${r.awq.calibration_tokens.toLocaleString("en-US")} calibration tokens) → ${g.type}, ${formatBytes(g.sizeAfter)}, ${formatDuration(r.seconds)}`, g.model.path].join("\n");
}
