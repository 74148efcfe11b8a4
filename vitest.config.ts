import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/unit/**/*.test.ts", "test/ui/**/*.test.{ts,tsx}", "test/e2e/**/*.test.ts"],
    // No test sees the user's SLM_* / HF_* settings (SLM_LLAMA_CPP_DIR, SLM_API_KEY, HF_ENDPOINT…).
    setupFiles: ["test/helpers/isolateEnv.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // e2e tests spawn the CLI and servers; on a 2-core machine more workers only add contention.
    maxWorkers: 2,
    // In CI also write a JSON summary, which .ci/run turns into one "N passed, N failed" line.
    reporters: process.env.CI ? ["default", ["json", { outputFile: ".vitest/results.json" }]] : ["default"],
  },
});
