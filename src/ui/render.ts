import type { EventSink, SlmEvent } from "../core/events.js";
import { type GlobalOptions, colorEnabled } from "./options.js";
import { plainEventWriter } from "./plain.js";

/**
 * The one place that decides how output looks. `--json`: NDJSON events on stdout, the last line a
 * `result` or an `error`. A TTY (and not CI): Ink on stderr. Otherwise: plain lines on stderr.
 * Results always go to stdout so they can be piped.
 */
export interface Renderer {
  readonly mode: "json" | "ink" | "plain";
  onEvent: EventSink;
  /** Prints the command's result: the object under --json, else the human text. */
  result(data: unknown, human: string): void;
  /** Stops live views; call before printing anything else to stdout/stderr. */
  close(): void;
}

function writeLine(stream: NodeJS.WriteStream, line: string): void {
  stream.write(line.endsWith("\n") ? line : `${line}\n`);
}

export async function createRenderer(opts: GlobalOptions, liveView = true): Promise<Renderer> {
  if (opts.json) {
    return {
      mode: "json",
      onEvent: (e: SlmEvent) => {
        if (e.type !== "log" || e.level !== "debug" || opts.verbose) writeLine(process.stdout, JSON.stringify(e));
      },
      result: (data) => writeLine(process.stdout, JSON.stringify({ type: "result", ts: Date.now(), data })),
      close: () => undefined,
    };
  }
  const quiet = () => undefined;
  const useInk = liveView && !opts.quiet && !!process.stderr.isTTY && !process.env.CI && process.env.TERM !== "dumb";
  if (useInk) {
    // Ink colours through chalk, which reads FORCE_COLOR when first imported: honour --no-color / NO_COLOR.
    if (!colorEnabled(opts, process.stderr)) process.env.FORCE_COLOR = "0";
    const [{ render }, React, { TaskView }, { TaskStore }] = await Promise.all([import("ink"), import("react"), import("./ink/TaskView.js"), import("./ink/taskStore.js")]);
    const store = new TaskStore();
    const app = render(React.createElement(TaskView, { store }), { stdout: process.stderr, patchConsole: false, exitOnCtrlC: false });
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      app.unmount();
    };
    return {
      mode: "ink",
      onEvent: (e) => store.push(e, opts.verbose),
      result: (_data, human) => {
        close();
        if (human) writeLine(process.stdout, human);
      },
      close,
    };
  }
  const write = (line: string) => writeLine(process.stderr, line);
  return {
    mode: "plain",
    onEvent: opts.quiet ? quiet : plainEventWriter(write, opts.verbose),
    result: (_data, human) => {
      if (human) writeLine(process.stdout, human);
    },
    close: () => undefined,
  };
}
