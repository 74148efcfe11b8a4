import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { llamaCppToolsForTests } from "../helpers/llamaCppTools.js";
import { BIN, ROOT, sandbox } from "../helpers/cli.js";

/**
 * Every fenced `slm …` / `npx slm …` example in README.md and docs/*.md, run against the built binary from a
 * fresh SLM_HOME per page, in the order the page shows them (later examples use what earlier ones made).
 * An example is skipped only by one of the mechanical rules in skipReason() below, and the skip names it.
 * A runnable example passes when it exits 0 and, where its comment says `# → X` on a `slm run`, prints X.
 */

interface Example {
  page: string;
  line: number;
  command: string; // the shell line as shown, continuation lines joined, without the `$ ` prompt
  comment: string; // the trailing `# …` comment, if any
  words: Word[]; // the words of the slm command itself
  verb: string;
}

interface Word {
  text: string;
  quoted: boolean;
}

const PAGES = ["README.md", ...readdirSync(path.join(ROOT, "docs")).filter((f) => f.endsWith(".md")).sort().map((f) => `docs/${f}`)];
const SLM_COMMAND = /(?:^|\|\s*)(?:[A-Z_]+=\S*\s+)*(?:npx\s+)?slm\s/;

const catalog = JSON.parse(readFileSync(path.join(ROOT, "catalog", "models.json"), "utf8")) as {
  models: Array<{ id: string; aliases?: string[]; builtin?: unknown }>;
};
const DOWNLOADED_NAMES = catalog.models.filter((m) => !m.builtin).flatMap((m) => [m.id, ...(m.aliases ?? [])]);
// Flags whose value names something slm writes, not a file the reader must already have.
const OUTPUT_FLAGS = new Set(["--out", "--report", "--save"]);
const HAS_PYTHON = Boolean(process.env.SLM_TEST_PYTHON);

/** Splits a shell line into words (quotes kept as a flag) and its trailing comment. */
function shellWords(line: string): { words: Word[]; comment: string } {
  const words: Word[] = [];
  let cur = "";
  let quoted = false;
  let inWord = false;
  let q: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (q) {
      if (c === q) q = undefined;
      else cur += c;
    } else if (c === "'" || c === '"') {
      q = c;
      quoted = inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push({ text: cur, quoted });
      cur = "";
      quoted = inWord = false;
    } else if (c === "#" && !inWord) {
      return { words, comment: line.slice(i + 1).trim() };
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (inWord) words.push({ text: cur, quoted });
  return { words, comment: "" };
}

function examplesOf(page: string): Example[] {
  const lines = readFileSync(path.join(ROOT, page), "utf8").split("\n");
  const out: Example[] = [];
  let fenced = false;
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.startsWith("```")) {
      fenced = !fenced;
      continue;
    }
    if (!fenced) continue;
    const first = i + 1;
    let text = lines[i]!.replace(/^\$ /, "");
    while (text.endsWith("\\") && i + 1 < lines.length) text = text.slice(0, -1) + " " + lines[++i]!.trim();
    if (!SLM_COMMAND.test(text)) continue;
    const { words: all, comment } = shellWords(text);
    const start = all.findIndex((w) => w.text === "slm" && !w.quoted);
    const words = all.slice(start + 1).filter((w, k, a) => !(w.text === "|" || a.slice(0, k).some((p) => p.text === "|")));
    const command = text.replace(/\s+#.*$/, "").trim();
    out.push({ page, line: first, command, comment, words, verb: words[0]?.text ?? "" });
  }
  return out;
}

/** Files the repo ships for examples: a page that names one without its path is wrong, not the reader's own file. */
const FIXTURE_NAMES = new Set(readdirSync(path.join(ROOT, "test", "fixtures"), { recursive: true, encoding: "utf8" }).map((p) => path.basename(p)));
const exists = (cwd: string, p: string) => existsSync(path.resolve(cwd, p.replace(/:[\d.]+$/, "")));
const looksLikePath = (t: string) => /^\.{0,2}\//.test(t) || /\.(jsonl|txt|gguf|json|md|html|safetensors)$/.test(t) || t.startsWith("test/");

/** The mechanical rules; the first that applies is the reason to skip. */
function skipReason(ex: Example, cwd: string, madeBySkipped: Set<string>): string | undefined {
  const bare = ex.words.filter((w) => !w.quoted).map((w) => w.text);
  if (bare.some((t) => /[<[…]/.test(t))) return "a synopsis (placeholders), not an example";
  if (bare.some((t) => ["--cuda", "--vulkan", "--gpus"].includes(t))) return "needs a GPU";
  if (ex.verb === "serve") return "`serve` runs until stopped (test/e2e/serve.test.ts covers it)";
  if (ex.verb === "setup") return "`setup` downloads from PyPI or builds for minutes (test/e2e/setup*.test.ts cover it)";
  if (ex.verb === "finetune") return "`finetune` trains for minutes (test/e2e/finetuneReal.test.ts covers it)";
  if (ex.verb === "convert" && !HAS_PYTHON) return "`convert` needs the Python ML stack (SLM_TEST_PYTHON is not set)";
  if (ex.verb === "export" && !HAS_PYTHON) return "`export` needs the Python ML stack (SLM_TEST_PYTHON is not set)";
  if (ex.verb === "prune" && !HAS_PYTHON) return "`prune` needs the Python ML stack (SLM_TEST_PYTHON is not set)";
  if (ex.verb === "quantize" && bare.some((t, k) => bare[k - 1] === "--method" && t !== "llamacpp") && !HAS_PYTHON) return "GPTQ/AWQ need the Python ML stack (SLM_TEST_PYTHON is not set)";
  // run/chat/eval/bench of a Hugging Face folder convert it to GGUF first, with llama.cpp's Python converter.
  if (!HAS_PYTHON && ["run", "chat", "eval", "bench"].includes(ex.verb) && bare.slice(1).some((t) => exists(cwd, path.join(t, "config.json")))) return "running a Hugging Face folder converts it with the Python ML stack (SLM_TEST_PYTHON is not set)";
  for (let k = 1; k < bare.length; k++) {
    const t = bare[k]!;
    if (OUTPUT_FLAGS.has(bare[k - 1]!)) continue;
    for (const part of t.split("+")) {
      const name = part.replace(/:[A-Za-z0-9_.]+$/, "");
      if (DOWNLOADED_NAMES.some((n) => name === n || name.startsWith(`${n}-`)))
        return `names a catalog model that must be downloaded (${part})`;
      if (/^hf:/.test(part) || (/^[A-Za-z0-9][\w.-]*\/[\w.-]+$/.test(name) && !exists(cwd, name) && !looksLikePath(name)))
        return `names a Hugging Face Hub repository (${part})`;
      if (madeBySkipped.has(part) || madeBySkipped.has(name)) return `uses ${part}, which a skipped example on this page makes`;
      // Run (and fail) rather than skip when the name is one of the repo's fixtures given without its path.
      if (looksLikePath(part) && !part.startsWith("-") && !exists(cwd, part) && !FIXTURE_NAMES.has(path.basename(part))) return `needs a file of the reader's own (${part})`;
    }
  }
  return undefined;
}

/** Names an example registers (`--out NAME`, `→ NAME` or `registers NAME` comments), so later examples that use them skip with it. */
function namesMadeBy(ex: Example): string[] {
  const names: string[] = [];
  const out = ex.words.findIndex((w) => w.text === "--out");
  if (out >= 0 && ex.words[out + 1]) names.push(ex.words[out + 1]!.text);
  const arrow = /^(?:→|registers)\s*([^\s,;:]+)/.exec(ex.comment);
  if (arrow && ex.verb !== "run") names.push(arrow[1]!);
  if (ex.verb === "finetune" && out >= 0) names.push(`${ex.words[1]?.text}+${ex.words[out + 1]?.text}`);
  return names;
}


const all = PAGES.flatMap(examplesOf);

it("finds the examples (the README's quick start among them)", () => {
  expect(all.length).toBeGreaterThan(40);
  expect(all.find((e) => e.page === "README.md")?.command).toBe('npx slm run tiny-arith "12+34"');
});

for (const page of PAGES) {
  const examples = all.filter((e) => e.page === page);
  if (examples.length === 0) continue;
  describe(page, () => {
    // A fresh SLM_HOME for the page; a scratch working folder where the repo's test/ fixtures are visible
    // at the relative paths the docs use, and anything an example writes (reports) lands outside the repo.
    const sb = sandbox();
    const cwd = mkdtempSync(path.join(tmpdir(), "slm-docs-"));
    symlinkSync(path.join(ROOT, "test"), path.join(cwd, "test"));
    const shim = path.join(cwd, ".bin");
    const madeBySkipped = new Set<string>();
    for (const ex of examples) {
      const reason = skipReason(ex, cwd, madeBySkipped);
      if (reason) for (const n of namesMadeBy(ex)) madeBySkipped.add(n);
      const title = `${page}:${ex.line} ${ex.command}`;
      if (reason) {
        it.skip(`${title} — skipped: ${reason}`, () => {});
        continue;
      }
      it(title, async (ctx) => {
        // Only quantize needs llama.cpp's tools: found, or built once per machine (the wait is for that build).
        const tools = ex.verb === "quantize" ? await llamaCppToolsForTests() : {};
        if (tools.skip) ctx.skip(tools.skip);
        if (!existsSync(shim)) {
          mkdirSync(shim);
          // `slm` and `npx slm` both run the built binary, as `npm link` would make them.
          writeFileSync(path.join(shim, "slm"), `#!/bin/sh\nexec node ${JSON.stringify(BIN)} "$@"\n`, { mode: 0o755 });
          writeFileSync(path.join(shim, "npx"), `#!/bin/sh\n[ "$1" = slm ] && shift\nexec node ${JSON.stringify(BIN)} "$@"\n`, { mode: 0o755 });
        }
        const env = {
          ...sb.env,
          PATH: `${shim}:${process.env.PATH}`,
          ...(tools.dir ? { SLM_LLAMA_CPP_DIR: tools.dir } : {}),
          ...(HAS_PYTHON ? { SLM_PYTHON: process.env.SLM_TEST_PYTHON! } : {}),
        };
        const r = await execa("bash", ["-c", ex.command], { cwd, env, extendEnv: true, reject: false, all: true, stdin: "ignore", timeout: 300_000 });
        expect(r.exitCode, `${title}\n${r.all}`).toBe(0);
        const arrow = /^(?:→|registers)\s*([^\s,;:]+)/.exec(ex.comment);
        if (arrow && ex.verb === "run") expect(r.stdout.trim(), title).toBe(arrow[1]);
      }, 2_700_000);
    }
  });
}
