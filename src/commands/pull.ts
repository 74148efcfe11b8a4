import { type Command, Option } from "commander";
import { formatBytes, formatDuration } from "../core/format.js";
import type { PullOptions } from "../backends/hub/pull.js";
import { action, collect, positiveInt } from "./action.js";

type PullFlags = Omit<PullOptions, "ref">;

export function register(program: Command): void {
  program
    .command("pull")
    .description("Download a model from the Hugging Face Hub into the shared HF cache, verified, and register it")
    .argument("<model>", "catalog name (phi-3, qwen2.5-0.5b…), hf:org/repo[:QUANT] or org/repo[:QUANT]")
    .addOption(new Option("--format <format>", "gguf (default when the repo has GGUF files), hf (safetensors + config + tokenizer) or onnx (one onnx/model*.onnx variant + configs + tokenizer)").choices(["gguf", "hf", "onnx"]))
    .option("--quant <type>", "quantization to pick from a GGUF repo (e.g. Q4_K_M, Q8_0); same as model:TYPE")
    .option("--dtype <dtype>", "with --format onnx: the variant (fp32 fp16 q8 int8 uint8 q4 q4f16 bnb4; default q4, then q8, then fp32); same as org/repo:q4")
    .option("--include <glob>", "with --format hf: files to take (repeatable; default weights, configs, tokenizer)", collect)
    .option("--exclude <glob>", "with --format hf: files to leave out (repeatable)", collect)
    .option("--revision <rev>", "branch, tag or commit (default main)")
    .option("--name <name>", "register under this name")
    .option("--connections <n>", "parallel connections per large file (default 4, or SLM_PULL_CONNECTIONS)", positiveInt("--connections"))
    .addHelpText(
      "after",
      `
Examples:
  slm pull phi-3                                   catalog alias, default quant (Q4_K_M)
  slm pull hf:bartowski/Qwen2.5-0.5B-Instruct-GGUF:Q8_0
  slm pull Qwen/Qwen2.5-0.5B-Instruct --format hf --include "*.safetensors" --include "*.json"
  slm pull onnx-community/SmolLM2-135M-Instruct-ONNX --format onnx --dtype q4
                                                   one ONNX variant (+ its external data); pulling
                                                   another --dtype adds it to the same model

An interrupted pull (Ctrl+C, a dropped connection, a killed process) resumes where it stopped when
run again. Every file is checked against the Hub's sha256; nothing is registered unless all match.
HF_TOKEN gives access to gated repos; HF_HUB_OFFLINE=1 uses only the cache.`,
    )
    .action(
      action(async (ctx, model: string, flags: PullFlags) => {
        const { pull } = await import("../backends/hub/pull.js");
        const render = await ctx.renderer();
        const r = await pull({ ref: model, ...flags }, { signal: ctx.signal, onEvent: render.onEvent });
        const fetched = r.files.filter((f) => f.status !== "cached").length;
        const human = r.files.length === 0
          ? `${r.model.name} is built in: ${r.model.path}`
          : `${r.model.name}: ${fetched === 0 ? "already up to date" : `${formatBytes(r.downloadedBytes)} in ${formatDuration(r.seconds)}`} (${formatBytes(r.model.size)}${r.model.quant ? `, ${r.model.quant}` : ""}${r.model.onnx ? `, ONNX ${r.model.onnx.dtypes.join(", ")}` : ""})\n${r.model.path}`;
        render.result({ model: r.model, files: r.files, downloadedBytes: r.downloadedBytes, seconds: r.seconds }, human);
      }),
    );
}
