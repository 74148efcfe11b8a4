import type { Command } from "commander";
import { CancelledError, UsageError } from "../core/errors.js";
import { action } from "./action.js";
import { type RuntimeFlags, type SamplingFlags, addRuntimeOptions, addSamplingOptions, samplingOf } from "./flags.js";

interface RunFlags extends SamplingFlags, RuntimeFlags {
  system?: string;
  raw?: boolean;
  jsonSchema?: string;
}

/**
 * The prompt piped in, without the one line ending that `echo` and editors put after the last line:
 * left in, it is part of the prompt the model sees (`echo 12+34 |` answered 66 where "12+34" gives 46).
 * Inner newlines, and any further blank lines, are the user's and stay.
 */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8").replace(/\r?\n$/, "");
}

export function register(program: Command): void {
  const cmd = program
    .command("run")
    .description("Generate a reply to one prompt and print it as it streams (scriptable; --json for one result object)")
    .argument("<model>", "registered name, catalog name, a .gguf file, an ONNX folder, or a Hugging Face/GPTQ/AWQ folder (converted to GGUF once)")
    .argument("[prompt]", "the prompt; read from stdin when left out")
    .option("-s, --system <text>", "system prompt")
    .option("--raw", "plain completion of the prompt, without the model's chat template")
    .option("--json-schema <file>", "constrain the output to this JSON schema");
  addSamplingOptions(cmd);
  addRuntimeOptions(cmd);
  cmd.addHelpText(
    "after",
    `
Examples:
  slm run tiny-arith "12+34" --temperature 0
  echo "Summarise: ..." | slm run qwen2.5-0.5b
  slm run tiny-arith "57-23" --lora test/fixtures/tiny-arith/gguf/lora-sub-f32.gguf
  slm run tiny-arith "57-23" --lora test/fixtures/tiny-arith/lora-sub      # a PEFT adapter folder
  slm run qwen2.5-0.5b "Name a colour" --json-schema colour.schema.json --json`,
  );
  cmd.action(
    action(async (ctx, modelRef: string, promptArg: string | undefined, flags: RunFlags) => {
      const prompt = promptArg ?? (process.stdin.isTTY ? undefined : await readStdin());
      if (prompt === undefined || prompt.trim() === "") throw new UsageError("Give a prompt as an argument or on stdin.", { hint: "For a conversation, use `slm chat`." });
      const [{ resolveRunnable }, { loadRuntimeModel, resolveRuntimeLora }, { readJsonSchema }, { parseGpu }] = await Promise.all([
        import("../backends/convert/runnable.js"),
        import("../backends/runtime/load.js"),
        import("../backends/llama/generate.js"),
        import("../backends/llama/runtime.js"),
      ]);
      const schema = flags.jsonSchema ? readJsonSchema(flags.jsonSchema) : undefined;
      const render = await ctx.renderer(false);
      const backend = { signal: ctx.signal, onEvent: render.onEvent };
      // A Hugging Face, GPTQ or AWQ folder runs as the GGUF converted from it once.
      const entry = await resolveRunnable(modelRef, backend, { dtype: flags.dtype });
      (await import("../backends/gguf/embedding.js")).assertGenerative(entry, "run");
      const lora = await resolveRuntimeLora(entry, flags.lora, backend);
      const model = await loadRuntimeModel(entry, { gpu: parseGpu(flags.gpu ?? "auto"), lora, contextSize: flags.ctx, capContextAtTraining: true, threads: flags.threads, dtype: flags.dtype, verbose: ctx.globals.verbose, chat: !flags.raw }, backend);
      try {
        const stream = !ctx.globals.json;
        const input = flags.raw ? { prompt } : { messages: [...(flags.system !== undefined ? [{ role: "system" as const, content: flags.system }] : []), { role: "user" as const, content: prompt }] };
        const r = await model.generate({ ...samplingOf(flags), ...input, jsonSchema: schema, signal: ctx.signal, onText: stream ? (t) => process.stdout.write(t) : undefined });
        if (stream) process.stdout.write(r.text.endsWith("\n") ? "" : "\n");
        const runtime = { runtime: model.runtime, ...(model.dtype ? { dtype: model.dtype } : {}), backend: model.backend };
        const settings = { ...flags, model: entry.name, path: entry.path, ...runtime, threads: model.threads, contextSize: model.contextSize, gpu: model.backend === "CPU" ? "none" : model.backend.toLowerCase(), adapters: model.adapters };
        if (ctx.globals.verbose && !ctx.globals.json) {
          process.stderr.write(`${r.promptTokens} prompt + ${r.completionTokens} generated tokens; first token ${r.timings.firstTokenMs} ms, ${r.timings.tokensPerSecond.toFixed(1)} tokens/s, load ${r.timings.loadMs} ms\n`);
        }
        if (ctx.globals.json) render.result({ ...r, settings }, "");
        if (r.stopReason === "abort") throw new CancelledError();
      } finally {
        await model.dispose();
      }
    }),
  );
}
