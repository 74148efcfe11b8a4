import { type Command, InvalidArgumentError } from "commander";
import type { GlobalOptions } from "../ui/options.js";
import type { LiveView, Renderer } from "../ui/render.js";

export interface CommandContext {
  globals: GlobalOptions;
  signal: AbortSignal;
  /** Created on first use, so commands that print a table never load Ink. */
  renderer(liveView?: boolean, view?: LiveView): Promise<Renderer>;
}

let interrupt: AbortController | undefined;

/** First Ctrl+C aborts the running work (which cleans up and exits 130); a second one exits at once. */
export function installInterruptHandler(): AbortSignal {
  if (!interrupt) {
    interrupt = new AbortController();
    const ctl = interrupt;
    const onSignal = () => {
      if (ctl.signal.aborted) process.exit(130);
      ctl.abort();
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  }
  return interrupt.signal;
}

export function globalsOf(cmd: Command): GlobalOptions {
  const o = cmd.optsWithGlobals() as Partial<GlobalOptions>;
  return { json: !!o.json, verbose: !!o.verbose, quiet: !!o.quiet, color: o.color !== false };
}

/** Wraps a command's action with its context; the renderer is closed however the action ends. */
export function action<A extends unknown[]>(fn: (ctx: CommandContext, ...args: A) => Promise<void>) {
  return async (...raw: unknown[]): Promise<void> => {
    const cmd = raw[raw.length - 1] as Command;
    const globals = globalsOf(cmd);
    let renderer: Renderer | undefined;
    const ctx: CommandContext = {
      globals,
      signal: installInterruptHandler(),
      renderer: async (liveView = true, view?: LiveView) => {
        if (!renderer) {
          const { createRenderer } = await import("../ui/render.js");
          renderer = await createRenderer(globals, liveView, view);
        }
        return renderer;
      },
    };
    try {
      await fn(ctx, ...(raw.slice(0, -1) as A));
    } finally {
      renderer?.close();
    }
  };
}

/** Parses a positive integer flag, or throws the usage error commander reports. */
export function positiveInt(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive whole number.`);
    return n;
  };
}

/** Commander collects repeatable flags with this. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
