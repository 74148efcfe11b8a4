#!/usr/bin/env node
// Thin launcher: the compiled CLI lives in dist/ (built by `npm install` through the prepare script).
//
// CommonJS on purpose (bin/package.json makes this folder CommonJS): node starts its libuv pool when an
// ES module entry is loaded, and reads UV_THREADPOOL_SIZE only then. From a CommonJS entry the variable can
// still be set here, before the pool exists. node-llama-cpp runs each llama_decode on a pool thread; with
// the default 4 threads successive decodes land on different threads and llama.cpp's compute threads
// migrate between cores every token: measured 0.55× llama-bench's generation speed with 2 threads, 0.97×
// with one pool thread (docs/benchmarks.md). `quantize` is here for --sweep, which scores and times every
// type like eval and bench do; `distill` for its teacher, which answers on parallel sequences like eval.
// Commands that do not generate keep node's default (pull writes and hashes on it).
// The name stays slm.js: npx caches the path of a package's bin, and a renamed launcher left `npx slm`
// failing with "slm: not found" for everyone who had run it before (it did, in CI).
"use strict";
const INFERENCE = new Set(["run", "chat", "bench", "serve", "eval", "quantize", "distill"]);
const verb = process.argv.slice(2).find((a) => !a.startsWith("-"));
if (verb !== undefined && INFERENCE.has(verb) && process.env.UV_THREADPOOL_SIZE === undefined) {
  process.env.UV_THREADPOOL_SIZE = "1";
}
import("../dist/cli.js").then((m) => m.main(process.argv)).catch((err) => {
  process.stderr.write(`slm: could not start (${err && err.message ? err.message : err}). Run \`npm run build\` in the slm folder.\n`);
  process.exit(1);
});
