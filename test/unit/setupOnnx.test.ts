import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { installOrt } from "../../src/backends/onnx/install.js";
import { EXIT } from "../../src/core/errors.js";

/**
 * npm itself is replaced (on PATH) by a script that logs its arguments and "installs" by linking this
 * checkout's onnxruntime-node, so the test needs no registry: what is tested is slm's side (the exact
 * npm command, the temporary folder renamed into place, the load check, nothing left on failure).
 */
const REAL = path.dirname(createRequire(import.meta.url).resolve("onnxruntime-node/package.json"));
const PINNED = (JSON.parse(readFileSync(path.resolve("package.json"), "utf8")) as { devDependencies: Record<string, string> }).devDependencies["onnxruntime-node"];
let root: string;
const saved = { PATH: process.env.PATH, SLM_HOME: process.env.SLM_HOME };

function fakeNpm(exitCode: number): string {
  const bin = path.join(root, "bin");
  mkdirSync(bin, { recursive: true });
  const log = path.join(root, "npm.log");
  writeFileSync(
    path.join(bin, "npm"),
    `#!${process.execPath}
const fs = require("fs"), path = require("path");
const args = process.argv.slice(2);
fs.writeFileSync(${JSON.stringify(log)}, JSON.stringify(args));
const prefix = args[args.indexOf("--prefix") + 1];
fs.mkdirSync(path.join(prefix, "node_modules"), { recursive: true });
fs.symlinkSync(${JSON.stringify(REAL)}, path.join(prefix, "node_modules", "onnxruntime-node"));
if (${exitCode}) { console.error("npm ERR! code E404"); process.exit(${exitCode}); }
`,
  );
  chmodSync(path.join(bin, "npm"), 0o755);
  return log;
}

beforeEach(() => {
  root = mkdtempSync(path.join(tmpdir(), "slm-setup-onnx-"));
  process.env.SLM_HOME = path.join(root, "home");
  process.env.PATH = `${path.join(root, "bin")}${path.delimiter}${saved.PATH}`;
});
afterEach(() => {
  process.env.PATH = saved.PATH;
  if (saved.SLM_HOME === undefined) delete process.env.SLM_HOME;
  else process.env.SLM_HOME = saved.SLM_HOME;
});

describe("installOrt (slm setup onnx)", () => {
  it("npm installs slm's pinned onnxruntime-node with --ignore-scripts into a temporary folder, then renames it to $SLM_HOME/onnx", async () => {
    const log = fakeNpm(0);
    const r = await installOrt({ force: true });
    const args = JSON.parse(readFileSync(log, "utf8")) as string[];
    const home = path.join(root, "home");
    expect(args).toEqual(["install", "--prefix", path.join(home, `onnx.tmp-${process.pid}`), "--ignore-scripts", "--no-audit", "--no-fund", "--no-save", "--omit=dev", `onnxruntime-node@${PINNED}`]);
    expect(r).toMatchObject({ version: PINNED, installed: true, dir: path.join(home, "onnx", "node_modules", "onnxruntime-node") });
    expect(JSON.parse(readFileSync(path.join(home, "onnx", "package.json"), "utf8")).private).toBe(true);
    expect(readdirSync(home).filter((n) => n.startsWith("onnx"))).toEqual(["onnx"]);
  });

  it("a failed npm install leaves neither the temporary folder nor $SLM_HOME/onnx", async () => {
    fakeNpm(1);
    await expect(installOrt({ force: true })).rejects.toMatchObject({ exitCode: EXIT.external });
    const home = path.join(root, "home");
    expect(existsSync(home) ? readdirSync(home).filter((n) => n.startsWith("onnx")) : []).toEqual([]);
  });
});
