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

/** Which live view a command gets: the step list, or the fine-tune view (loss curve, speed, ETA). */
export type LiveView = "tasks" | "finetune";

export async function createRenderer(opts: GlobalOptions, liveView = true, view: LiveView = "tasks"): Promise<Renderer> {
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
    const [{ render }, React] = await Promise.all([import("ink"), import("react")]);
    let store: { push(e: SlmEvent, verbose?: boolean): void };
    let element: import("react").ReactElement;
    if (view === "finetune") {
      const [{ FinetuneView }, { FinetuneStore }] = await Promise.all([import("./ink/FinetuneView.js"), import("./ink/finetuneStore.js")]);
      const fs = new FinetuneStore();
      [store, element] = [fs, React.createElement(FinetuneView, { store: fs })];
    } else {
      const [{ TaskView }, { TaskStore }] = await Promise.all([import("./ink/TaskView.js"), import("./ink/taskStore.js")]);
      const ts = new TaskStore();
      [store, element] = [ts, React.createElement(TaskView, { store: ts })];
    }
    const app = render(element, { stdout: process.stderr, patchConsole: false, exitOnCtrlC: false });
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
    onEvent: opts.quiet ? quiet : view === "finetune" ? (await import("./finetunePlain.js")).plainFinetuneWriter(write, opts.verbose) : plainEventWriter(write, opts.verbose),
    result: (_data, human) => {
      if (human) writeLine(process.stdout, human);
    },
    close: () => undefined,
  };
}
