import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import lockfile from "proper-lockfile";
import { ROOT } from "./cli.js";
import { onnxExportPythonForTests } from "./python.js";
import { HF, runRecipe } from "./quantRecipe.js";

/**
 * tiny-arith exported to ONNX (fp32 and q4) by slm's export recipe (recipes/export_onnx.py, what `slm export
 * --format onnx` runs), once, shared by every ONNX test file: a folder in the system temp directory named by a
 * hash of what decides its bytes (the recipe and the fixture's weights and tokenizer). The first test file to
 * ask exports under a cross-process lock; the others (other vitest workers, later runs) wait for it and reuse
 * it. Not a vitest globalSetup: that would export for every test run, including the many that never touch
 * ONNX. The recipe is run directly so that the runtime's tests do not hang on the CLI's registration;
 * `slm export` itself is tested in export.test.ts and, for a fine-tune, in onnxEval.test.ts.
 *
 * The folder is read-only to the tests by agreement: a test that changes an export copies it first.
 */
export const ONNX_FIXTURE_DTYPES = ["fp32", "q4"] as const;
export const ONNX_FIXTURE_NAME = "tiny-arith-onnx";

/** What decides the exported bytes: the recipe and its library, the model. */
const HASHED = ["recipes/export_onnx.py", "recipes/slm_recipes", "test/fixtures/tiny-arith/hf"];

export interface OnnxFixture {
  /** The ONNX folder (config.json, tokenizer.json, onnx/model.onnx, onnx/model_q4.onnx). */
  dir?: string;
  /** Why the ONNX tests cannot run here (no Python with torch, transformers, onnx and onnxruntime). */
  skip?: string;
  /** Seconds the export took, or 0 when an earlier run's was reused. */
  seconds: number;
}

let pending: Promise<OnnxFixture> | undefined;

/** The shared export; throws (with slm's output) when the Python environment is there but the export fails. */
export function onnxFixture(): Promise<OnnxFixture> {
  return (pending ??= make());
}

function filesUnder(rel: string): string[] {
  const abs = path.join(ROOT, rel);
  if (!existsSync(abs)) return [];
  if (!statSync(abs).isDirectory()) return [rel];
  return readdirSync(abs)
    .filter((f) => f !== "__pycache__")
    .sort()
    .flatMap((f) => filesUnder(path.join(rel, f)));
}

export function fixtureKey(): string {
  const h = createHash("sha256").update(ONNX_FIXTURE_DTYPES.join(","));
  for (const rel of HASHED.flatMap(filesUnder)) h.update(rel).update("\0").update(readFileSync(path.join(ROOT, rel))).update("\0");
  return h.digest("hex").slice(0, 16);
}

async function make(): Promise<OnnxFixture> {
  const cache = path.join(tmpdir(), `slm-onnx-fixture-${fixtureKey()}`);
  const dir = path.join(cache, ONNX_FIXTURE_NAME);
  // Made already: no Python needed (finding one imports torch, ~8 s per test file on a 2-core machine).
  if (existsSync(path.join(cache, "done"))) return { dir, seconds: 0 };
  const py = await onnxExportPythonForTests();
  if (py.skip) return { skip: py.skip, seconds: 0 };
  mkdirSync(path.dirname(cache), { recursive: true });
  // A killed exporter's lock goes stale after 30 s; the holder refreshes it every 15 s meanwhile.
  const release = await lockfile.lock(cache, { realpath: false, stale: 30_000, update: 15_000, retries: { retries: 2_000, minTimeout: 200, maxTimeout: 500, factor: 1.2 } });
  try {
    if (existsSync(path.join(cache, "done"))) return { dir, seconds: 0 };
    const t0 = performance.now();
    // A half-made folder from an exporter that was killed: start again.
    rmSync(cache, { recursive: true, force: true });
    const work = `${cache}.tmp-${process.pid}`;
    rmSync(work, { recursive: true, force: true });
    mkdirSync(work, { recursive: true });
    await runRecipe(py.python!, "export_onnx.py", { model: HF, output_dir: path.join(work, ONNX_FIXTURE_NAME), dtypes: ONNX_FIXTURE_DTYPES, threads: 1 });
    const seconds = (performance.now() - t0) / 1000;
    writeFileSync(path.join(work, "done"), JSON.stringify({ seconds, dtypes: ONNX_FIXTURE_DTYPES, date: new Date().toISOString() }));
    renameSync(work, cache);
    process.stderr.write(`[tests] exported tiny-arith to ONNX (${ONNX_FIXTURE_DTYPES.join(", ")}) in ${seconds.toFixed(1)} s: ${dir}\n`);
    return { dir, seconds };
  } finally {
    await release().catch(() => undefined);
  }
}
