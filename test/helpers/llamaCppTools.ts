import path from "node:path";
import { buildLlamaCpp } from "../../src/backends/llamacpp/build.js";
import { findTools } from "../../src/backends/llamacpp/tools.js";
import { MissingDependencyError } from "../../src/core/errors.js";
import { userEnvironment } from "./isolateEnv.js";

/**
 * llama.cpp's tools for end-to-end tests, found the way slm finds them (SLM_LLAMA_CPP_DIR, PATH, the real
 * $SLM_HOME — ~/.slm unless set), or built once per machine into that real $SLM_HOME. Tests then point
 * their throw-away sandboxes at the folder with SLM_LLAMA_CPP_DIR, so no test rebuilds anything and
 * every later run (CI on the same machine included) reuses the build. Concurrent test files wait on
 * the build lock instead of building twice.
 *
 * Without cmake, git or a C++ compiler the answer is a reason to skip, named in the test output.
 */
export interface TestTools {
  dir?: string;
  skip?: string;
}

let pending: Promise<TestTools> | undefined;

export function llamaCppToolsForTests(): Promise<TestTools> {
  pending ??= locate();
  return pending;
}

async function locate(): Promise<TestTools> {
  const needed = ["llama-quantize", "llama-imatrix"] as const;
  // The user's own settings, which isolateEnv.ts keeps away from the tests: only to find their tools.
  const env = userEnvironment();
  const found = await findTools(needed, env);
  const dirs = new Set(found.map((t) => (t.path ? path.dirname(t.path) : undefined)));
  if (found.every((t) => t.path) && dirs.size === 1) return { dir: [...dirs][0] };
  const t0 = Date.now();
  let lastPct = -10;
  process.stderr.write("[tests] llama.cpp's tools are not built on this machine yet: building them once (about 10 minutes on 2 cores)…\n");
  try {
    const r = await buildLlamaCpp(
      { env },
      {
        onEvent: (e) => {
          // One line per 10 %: enough to show CI that the build is alive.
          if (e.type === "progress" && e.current >= lastPct + 10) {
            lastPct = e.current;
            process.stderr.write(`[tests] building llama.cpp: ${e.current}% after ${Math.round((Date.now() - t0) / 1000)} s\n`);
          } else if (e.type === "log" && e.level !== "debug") process.stderr.write(`[tests] ${e.message}\n`);
        },
      },
    );
    process.stderr.write(`[tests] llama.cpp's tools are in ${r.binDir} (${Math.round(r.seconds)} s)\n`);
    return { dir: r.binDir };
  } catch (err) {
    if (err instanceof MissingDependencyError) return { skip: `llama.cpp's tools are missing and cannot be built here: ${err.message}` };
    throw err;
  }
}
