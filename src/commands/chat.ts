import type { Command } from "commander";
import { CancelledError } from "../core/errors.js";
import { colorEnabled } from "../ui/options.js";
import { action } from "./action.js";
import { type RuntimeFlags, type SamplingFlags, addRuntimeOptions, addSamplingOptions, samplingOf } from "./flags.js";

interface ChatFlags extends SamplingFlags, RuntimeFlags {
  system?: string;
}

export function register(program: Command): void {
  const cmd = program
    .command("chat")
    .description("Chat with a model in the terminal (a line-by-line REPL when stdin is not a terminal, or with --json)")
    .argument("<model>", "registered name, catalog name, a .gguf file, an ONNX folder, or a Hugging Face/GPTQ/AWQ folder (converted to GGUF once)")
    .option("-s, --system <text>", "system prompt");
  addSamplingOptions(cmd);
  addRuntimeOptions(cmd);
  cmd.addHelpText(
    "after",
    `
In the chat: /help, /reset, /system TEXT, /save FILE, /load FILE, /exit. ↑/↓ recall earlier lines;
Ctrl+C stops an answer, a second Ctrl+C (or one when idle) leaves.

Examples:
  slm chat qwen2.5-0.5b --system "Answer briefly."
  printf '12+34\\n/reset\\n57-23\\n' | slm chat tiny-arith -t 0 --lora test/fixtures/tiny-arith/gguf/lora-sub-f32.gguf
  printf '12+34\\n' | slm chat tiny-arith -t 0 --json`,
  );
  cmd.action(
    action(async (ctx, modelRef: string, flags: ChatFlags) => {
      const [{ resolveRunnable }, { loadRuntimeModel, resolveRuntimeLora }, { parseGpu }] = await Promise.all([
        import("../backends/convert/runnable.js"),
        import("../backends/runtime/load.js"),
        import("../backends/llama/runtime.js"),
      ]);
      // The Ink view needs a terminal on both ends; anything else (pipes, files, --json) gets the REPL.
      const interactive = !ctx.globals.json && !!process.stdin.isTTY && !!process.stdout.isTTY && process.env.TERM !== "dumb";
      const talkative = !!process.stderr.isTTY && !ctx.globals.quiet && !ctx.globals.json;
      // Ink colours through chalk, which reads FORCE_COLOR once, when first imported; node-llama-cpp
      // imports the same chalk while loading the model, so --no-color / NO_COLOR must be set before that.
      if (interactive && !colorEnabled(ctx.globals, process.stdout)) process.env.FORCE_COLOR = "0";
      const render = await ctx.renderer(false);
      const backend = { signal: ctx.signal, onEvent: render.onEvent };
      // A Hugging Face, GPTQ or AWQ folder runs as the GGUF converted from it once.
      const entry = await resolveRunnable(modelRef, backend, { dtype: flags.dtype });
      (await import("../backends/gguf/embedding.js")).assertGenerative(entry, "chat");
      const lora = await resolveRuntimeLora(entry, flags.lora, backend);
      if (talkative) process.stderr.write(`Loading ${entry.name}…`);
      const model = await loadRuntimeModel(entry, { gpu: parseGpu(flags.gpu ?? "auto"), lora, contextSize: flags.ctx, capContextAtTraining: true, threads: flags.threads, dtype: flags.dtype, verbose: ctx.globals.verbose, chat: true }, backend);
      if (talkative) process.stderr.write("\r\x1b[K");
      let engine: Awaited<ReturnType<typeof model.openChat>>;
      try {
        engine = await model.openChat({ ...samplingOf(flags), system: flags.system });
      } catch (err) {
        await model.dispose();
        throw err;
      }
      try {
        if (interactive) {
          const [{ render: renderInk }, React, { ChatView }] = await Promise.all([import("ink"), import("react"), import("../ui/ink/ChatView.js")]);
          // On stdout, unlike progress views: the conversation is this command's output.
          const app = renderInk(React.createElement(ChatView, { engine, model: entry.name, signal: ctx.signal }), { exitOnCtrlC: false, patchConsole: false });
          await app.waitUntilExit();
        } else {
          const { runChatRepl } = await import("../ui/ink/chatRepl.js");
          if (talkative) process.stderr.write(`Chatting with ${entry.name}: one message per line, /help for commands, Ctrl+D to end.\n`);
          await runChatRepl({
            engine,
            input: process.stdin,
            out: (t) => process.stdout.write(t),
            err: (t) => process.stderr.write(t),
            json: ctx.globals.json,
            prompt: talkative && process.stdin.isTTY ? "> " : undefined,
            signal: ctx.signal,
          });
        }
        if (ctx.signal.aborted) throw new CancelledError();
      } finally {
        engine.dispose?.();
        await model.dispose();
      }
    }),
  );
}
