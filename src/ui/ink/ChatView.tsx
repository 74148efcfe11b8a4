import { Box, Static, Text, useApp, useInput, useStdout } from "ink";
import { useCallback, useEffect, useRef, useState } from "react";
import { type ChatEngineApi, type ContextUsage, messageText, parseChatCommand, runChatCommand } from "../../backends/llama/chat.js";
import { type LineState, editLine, emptyLine, submitLine } from "./chatInput.js";

export interface ChatViewProps {
  engine: ChatEngineApi;
  /** Shown in the status line. */
  model: string;
  /** Aborted from outside (SIGTERM, or SIGINT sent by another process): stop and leave. */
  signal?: AbortSignal;
}

type EntryKind = "user" | "assistant" | "command" | "note" | "error";

interface Entry {
  id: number;
  kind: EntryKind;
  text: string;
  /** A remark after an answer, such as "stopped". */
  meta?: string;
}

const LABEL_WIDTH = 11;
const KEYS_HELP = "Keys: Enter sends · ↑/↓ history · Ctrl+C stops an answer, or leaves when idle · Ctrl+D on an empty line leaves";

function Message({ entry }: { entry: Entry }) {
  switch (entry.kind) {
    case "user":
    case "assistant":
      return (
        <Box>
          <Box width={LABEL_WIDTH} flexShrink={0}>
            <Text bold color={entry.kind === "user" ? "cyan" : "green"}>
              {entry.kind === "user" ? "you" : "assistant"}
            </Text>
          </Box>
          <Box flexGrow={1}>
            <Text>
              {entry.text === "" ? <Text dimColor>(no answer)</Text> : entry.text}
              {entry.meta ? <Text dimColor> [{entry.meta}]</Text> : null}
            </Text>
          </Box>
        </Box>
      );
    case "command":
      return <Text dimColor>› {entry.text}</Text>;
    case "note":
      return <Text color="yellow">{entry.text}</Text>;
    case "error":
      return <Text color="red">✗ {entry.text}</Text>;
  }
}

/**
 * The last lines of a streaming answer that fit in `rows` rows of `width` columns. Ink redraws the
 * whole live area on every token and falls back to clearing the screen once it is taller than the
 * terminal, so only the tail is live; the full answer moves to the scrollback when it is done.
 */
export function tailLines(text: string, width: number, rows: number): string {
  const w = Math.max(1, width);
  const out: string[] = [];
  let budget = rows;
  const lines = text.split("\n");
  for (let i = lines.length - 1; i >= 0 && budget > 0; i--) {
    const line = lines[i]!;
    const need = Math.max(1, Math.ceil(line.length / w));
    if (need <= budget) {
      out.unshift(line);
      budget -= need;
    } else {
      out.unshift(line.slice(line.length - budget * w));
      budget = 0;
    }
  }
  return out.join("\n");
}

function InputLine({ line, busy }: { line: LineState; busy: boolean }) {
  const before = line.value.slice(0, line.cursor);
  const at = line.value[line.cursor] ?? " ";
  const after = line.value.slice(line.cursor + 1);
  return (
    <Box>
      <Text color={busy ? "gray" : "cyan"}>› </Text>
      <Text dimColor={busy}>
        {before}
        <Text inverse>{at}</Text>
        {after}
      </Text>
    </Box>
  );
}

/** Speed is "–" until an answer has at least two tokens (the first one's time is prompt processing). */
function StatusLine({ model, busy, speed, context }: { model: string; busy: boolean; speed: number | undefined; context: ContextUsage }) {
  const pct = context.size > 0 ? Math.round((context.used / context.size) * 100) : 0;
  const ctxColor = pct >= 90 ? "red" : pct >= 75 ? "yellow" : undefined;
  return (
    <Text dimColor>
      {model} · {busy ? "answering…" : speed ? `${speed.toFixed(1)} tok/s` : "– tok/s"} ·{" "}
      <Text color={ctxColor}>
        ctx {context.used}/{context.size}
      </Text>{" "}
      · {busy ? "Ctrl+C stops" : "/help · ↑↓ history · Ctrl+C exits"}
    </Text>
  );
}

/**
 * The interactive chat: finished messages scroll up (Static), the answer being written streams below
 * them, then the input line and a status line. All conversation state lives in the engine; the view
 * only turns keys into engine calls, so tests drive it with a stand-in engine.
 */
export function ChatView({ engine, model, signal }: ChatViewProps) {
  const { exit } = useApp();
  const { stdout } = useStdout();
  const [entries, setEntries] = useState<Entry[]>([]);
  const [streaming, setStreaming] = useState<string | undefined>(undefined);
  const [speed, setSpeed] = useState<number | undefined>(undefined);
  const [context, setContext] = useState<ContextUsage>(() => engine.contextUsed());
  const [exiting, setExiting] = useState(false);
  // Key handlers read refs, not state: several keys can arrive before React re-renders (a paste
  // followed by Enter), and each must see the effect of the one before.
  const lineRef = useRef<LineState>(emptyLine());
  const [line, setLine] = useState<LineState>(lineRef.current);
  const answer = useRef<{ ctl: AbortController; done: Promise<void> } | undefined>(undefined);
  const nextId = useRef(0);

  const add = useCallback((...items: Omit<Entry, "id">[]) => {
    setEntries((prev) => [...prev, ...items.map((e) => ({ ...e, id: nextId.current++ }))]);
  }, []);

  const updateLine = (next: LineState) => {
    lineRef.current = next;
    setLine(next);
  };

  /** Leaves once any answer has stopped, so the engine is idle when the command disposes it. */
  const leave = useCallback(() => {
    const pending = answer.current;
    pending?.ctl.abort();
    void (pending?.done ?? Promise.resolve()).then(() => setExiting(true));
  }, []);

  // Unmount only after a render without the input and status lines, so they do not stay on screen.
  useEffect(() => {
    if (exiting) exit();
  }, [exiting, exit]);

  useEffect(() => {
    if (!signal) return;
    if (signal.aborted) leave();
    signal.addEventListener("abort", leave);
    return () => signal.removeEventListener("abort", leave);
  }, [signal, leave]);

  const send = (text: string) => {
    const ctl = new AbortController();
    add({ kind: "user", text });
    setStreaming("");
    let partial = "";
    const done = engine
      .send(text, {
        signal: ctl.signal,
        onText: (chunk) => {
          partial += chunk;
          setStreaming(partial);
        },
      })
      .then(
        (r) => {
          add({ kind: "assistant", text: r.text, meta: r.stopReason === "abort" ? "stopped" : r.stopReason === "maxTokens" ? "max tokens" : undefined });
          setSpeed(r.timings.tokensPerSecond);
          setContext(r.context);
        },
        (err: unknown) => {
          // Stopped before the answer began (while the prompt was evaluated): not an error to the user.
          if (ctl.signal.aborted) add({ kind: "assistant", text: partial, meta: "stopped" });
          else {
            if (partial) add({ kind: "assistant", text: partial, meta: "failed" });
            add({ kind: "error", text: err instanceof Error ? err.message : String(err) });
          }
          setContext(engine.contextUsed());
        },
      )
      .finally(() => {
        answer.current = undefined;
        setStreaming(undefined);
      });
    answer.current = { ctl, done };
  };

  const command = async (raw: string) => {
    add({ kind: "command", text: raw });
    try {
      const cmd = parseChatCommand(raw)!;
      const outcome = await runChatCommand(engine, cmd);
      if (outcome.kind === "exit") return leave();
      if (outcome.kind === "help") add({ kind: "note", text: `${outcome.message}\n${KEYS_HELP}\nStart a message with // to send a leading "/".` });
      else add({ kind: "note", text: outcome.message });
      if (outcome.kind === "loaded") {
        if (outcome.transcript.system !== undefined) add({ kind: "note", text: `System prompt: ${outcome.transcript.system}` });
        add(...outcome.transcript.messages.map((m) => ({ kind: m.role === "user" ? ("user" as const) : ("assistant" as const), text: m.content })));
      }
    } catch (err) {
      const hint = (err as { hint?: string }).hint;
      add({ kind: "error", text: `${err instanceof Error ? err.message : String(err)}${hint ? `\n  ${hint}` : ""}` });
    }
    setContext(engine.contextUsed());
  };

  useInput((input, key) => {
    if (exiting) return;
    if (key.ctrl && input === "c") {
      const pending = answer.current;
      // First Ctrl+C stops the answer (keeping what was written); a second one, or one when idle, leaves.
      if (pending && !pending.ctl.signal.aborted) pending.ctl.abort();
      else leave();
      return;
    }
    if (key.ctrl && input === "d" && lineRef.current.value === "") return leave();
    // Text and Enter can arrive as one chunk (typing faster than a render, tmux send-keys): insert the
    // text, then treat the trailing line break as Enter. Breaks inside a paste become spaces instead.
    const typedThenEnter = !key.return && !key.ctrl && !key.meta && /[^\r\n][\r\n]+$/.test(input);
    if (typedThenEnter) updateLine(editLine(lineRef.current, input.replace(/[\r\n]+$/, ""), key));
    if (key.return || typedThenEnter) {
      const raw = lineRef.current.value;
      if (answer.current || raw.trim() === "") return;
      updateLine(submitLine(lineRef.current));
      if (parseCommandSafe(raw)) void command(raw.trim());
      else send(messageText(raw));
      return;
    }
    const next = editLine(lineRef.current, input, key);
    if (next !== lineRef.current) updateLine(next);
  });

  const width = stdout.columns || 80;
  // Rows left for the streaming answer: the terminal minus input, status and a margin.
  const liveRows = Math.max(3, (stdout.rows || 24) - 4);
  return (
    <>
      <Static items={entries}>
        {(entry) => (
          <Box key={entry.id} marginBottom={entry.kind === "assistant" ? 1 : 0}>
            <Message entry={entry} />
          </Box>
        )}
      </Static>
      {exiting ? null : (
        <Box flexDirection="column">
          {streaming !== undefined ? (
            <Box>
              <Box width={LABEL_WIDTH} flexShrink={0}>
                <Text bold color="green">
                  assistant
                </Text>
              </Box>
              <Text>{streaming === "" ? <Text dimColor>…</Text> : tailLines(streaming, width - LABEL_WIDTH, liveRows)}</Text>
            </Box>
          ) : null}
          <InputLine line={line} busy={streaming !== undefined} />
          <StatusLine model={model} busy={streaming !== undefined} speed={speed} context={context} />
        </Box>
      )}
    </>
  );
}

/** Whether a line is a command; an unknown "/x" counts, so that it gets its error instead of being sent. */
function parseCommandSafe(raw: string): boolean {
  try {
    return parseChatCommand(raw) !== undefined;
  } catch {
    return true;
  }
}
