#!/usr/bin/env node
// Thin launcher: the compiled CLI lives in dist/ (built by `npm install` through the prepare script).
import("../dist/cli.js").then((m) => m.main(process.argv)).catch((err) => {
  process.stderr.write(`slm: could not start (${err && err.message ? err.message : err}). Run \`npm run build\` in the slm folder.\n`);
  process.exit(1);
});
