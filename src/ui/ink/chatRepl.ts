import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import { type ChatEngineApi, messageText, parseChatCommand, runChatCommand } from "../../backends/llama/chat.js";
import { CancelledError } from "../../core/errors.js";

/**
 * The line-by-line chat used when stdin or stdout is not a terminal, or with --json: one message per
 * line in, one answer per line out, so it can be scripted. (It lives beside the Ink view it stands in
 * for, but uses no Ink.)
 */
export interface ReplOptions {
  engine: ChatEngineApi;
  input: Readable;
  /** Answers (or NDJSON objects with --json). */
  out: (text: string) => void;
  /** Command confirmations and errors; always shown, they are the reply to a command. */
  err: (text: string) => void;
  json: boolean;
  /** Written to `err` before each line when a person is typing (both stdin and stderr are terminals). */
  prompt?: string;
  signal?: AbortSignal;
}

/** Runs until EOF or /exit; throws CancelledError when the signal stops it. */
export async function runChatRepl(o: ReplOptions): Promise<void> {
  const rl = createInterface({ input: o.input, terminal: false, crlfDelay: Infinity });
  const stop = () => rl.close();
  o.signal?.addEventListener("abort", stop);
  const event = (type: "log", level: "info" | "warn", message: string) => o.out(`${JSON.stringify({ type, ts: Date.now(), level, message })}\n`);
  const note = (message: string) => (o.json ? event("log", "info", message) : o.err(`${message}\n`));
  const showPrompt = () => {
    if (o.prompt) o.err(o.prompt);
  };
  try {
    showPrompt();
    for await (const raw of rl) {
      if (o.signal?.aborted) break;
      const line = raw.trim();
      if (!line) {
        showPrompt();
        continue;
      }
      let cmd: ReturnType<typeof parseChatCommand>;
      try {
        cmd = parseChatCommand(line);
        if (cmd) {
          const outcome = await runChatCommand(o.engine, cmd);
          if (outcome.kind === "exit") break;
          note(outcome.message);
        }
      } catch (e) {
        // A failed command is reported and the conversation goes on, as in the interactive view.
        const err = e as Error & { hint?: string };
        if (o.json) event("log", "warn", `${err.message}${err.hint ? ` (${err.hint})` : ""}`);
        else o.err(`error: ${err.message}\n${err.hint ? `hint: ${err.hint}\n` : ""}`);
        showPrompt();
        continue;
      }
      if (!cmd) {
        const r = await o.engine.send(messageText(line), { signal: o.signal, onText: o.json ? undefined : (t) => o.out(t) });
        if (o.json) o.out(`${JSON.stringify({ type: "result", ts: Date.now(), data: r })}\n`);
        else if (!r.text.endsWith("\n")) o.out("\n");
        if (r.stopReason === "abort") break;
      }
      showPrompt();
    }
  } finally {
    o.signal?.removeEventListener("abort", stop);
    rl.close();
  }
  if (o.signal?.aborted) throw new CancelledError();
}
