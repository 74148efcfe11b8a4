/** The global flags every command sees. */
export interface GlobalOptions {
  json: boolean;
  verbose: boolean;
  quiet: boolean;
  color: boolean;
}

export function colorEnabled(opts: GlobalOptions, stream: NodeJS.WriteStream): boolean {
  return opts.color && !("NO_COLOR" in process.env && process.env.NO_COLOR !== "") && !!stream.isTTY && !opts.json;
}
