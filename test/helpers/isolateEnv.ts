import { tmpdir } from "node:os";
import path from "node:path";

/**
 * Vitest setup file: the tests must not depend on the environment of whoever runs them. The user's own
 * slm and Hugging Face settings (SLM_LLAMA_CPP_DIR, which the README recommends, SLM_HOME, SLM_PYTHON,
 * SLM_API_KEY, HF_ENDPOINT, HF_TOKEN…) are taken out of process.env before any test file loads, so
 * neither the code under test nor a CLI a test spawns (execa extends process.env) sees them. Test
 * settings (SLM_TEST_*) stay. The removed values are kept as SLM_TEST_USER_<name>: llamaCppToolsForTests
 * reads them on purpose, to reuse the llama.cpp tools the user already has instead of building them.
 */
const USER_SETTING = /^(SLM_|HF_|HUGGINGFACE_|HUGGING_FACE_)/;
export const KEPT_PREFIX = "SLM_TEST_USER_";

for (const name of Object.keys(process.env)) {
  if (!USER_SETTING.test(name) || name.startsWith("SLM_TEST_")) continue;
  process.env[`${KEPT_PREFIX}${name}`] = process.env[name];
  delete process.env[name];
}

/** The environment as the user set it (for finding their llama.cpp tools only). */
export function userEnvironment(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const [name, value] of Object.entries(process.env)) if (name.startsWith(KEPT_PREFIX)) env[name.slice(KEPT_PREFIX.length)] = value;
  return env;
}

/**
 * slm's log-probability addon is compiled once per libllama and node (src/backends/llama/native/build.ts),
 * a few seconds each time: every test and every CLI a test spawns share one cache (keyed by what the
 * binary depends on, built under a lock in that folder) instead of building it in each sandbox's $SLM_HOME.
 */
process.env.SLM_NATIVE_DIR = path.join(tmpdir(), "slm-native-addon-tests");
