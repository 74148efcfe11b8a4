import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { type Sandbox, interruptWhen, lastJson, sandbox, slm } from "../helpers/cli.js";

/**
 * `slm setup python` for real, on a machine that cannot reach PyPI (this one, and CI): the venv is
 * created, pip fails to connect, and the answer must be a NetworkError that says so, with nothing left
 * in $SLM_HOME but the unpacked llama.cpp scripts (a cache every later run reuses).
 */
const SLOW = 240_000;
/**
 * pip's view of the world without any package source: no config files (a machine may configure a local
 * mirror there, as this one does, from which the install would simply succeed) and no find-links.
 */
const NO_PACKAGE_SOURCES = { PIP_CONFIG_FILE: "/dev/null", PIP_FIND_LINKS: "", PIP_EXTRA_INDEX_URL: "" };

function leftovers(box: Sandbox): string[] {
  if (!existsSync(box.home)) return [];
  // locks/ and llama.cpp-py/ (the unpacked conversion scripts) are caches, not a half-made environment.
  return readdirSync(box.home).filter((n) => !["locks", "llama.cpp-py"].includes(n));
}

describe("slm setup python", () => {
  it("without access to PyPI: exit 4 with a clear NetworkError, and no venv, half or whole", async () => {
    // A proxy on a closed local port makes "no network" certain, even on a machine that has one.
    const sb = sandbox(undefined, { ...NO_PACKAGE_SOURCES, SLM_PYTHON: "", HTTPS_PROXY: "http://127.0.0.1:9", HTTP_PROXY: "http://127.0.0.1:9", https_proxy: "http://127.0.0.1:9", http_proxy: "http://127.0.0.1:9", PIP_RETRIES: "1", PIP_TIMEOUT: "5" });
    const r = await slm(["setup", "python", "--cpu", "--json"], sb);
    expect(r.exitCode, r.all).toBe(4);
    const err = lastJson(r.stdout).error!;
    expect(err.message).toContain("needs the Python Package Index");
    expect(err.message).toContain("cannot reach it");
    expect(err.hint).toContain("SLM_PYTHON");
    expect(err.hint).toContain("Nothing was installed");
    // It got as far as creating the environment and asking pip for torch.
    const events = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { type: string; id?: string; status?: string });
    expect(events).toContainEqual(expect.objectContaining({ type: "step", id: "python:venv", status: "done" }));
    expect(events).toContainEqual(expect.objectContaining({ type: "step", id: "python:torch", status: "fail" }));
    expect(leftovers(sb)).toEqual([]);
    expect(existsSync(path.join(sb.home, "llama.cpp-py"))).toBe(true);
  }, SLOW);

  it("Ctrl+C while it runs: exit 130 and nothing left", async () => {
    const sb = sandbox(undefined, { ...NO_PACKAGE_SOURCES, SLM_PYTHON: "", HTTPS_PROXY: "http://127.0.0.1:9", https_proxy: "http://127.0.0.1:9" });
    const child = slm(["setup", "python", "--cpu", "--json"], sb);
    interruptWhen(child, /"python:venv"/);
    const r = await child;
    expect(r.exitCode, r.all).toBe(130);
    expect(leftovers(sb)).toEqual([]);
  }, SLOW);

  it("refuses flags that belong to llama.cpp, and llama.cpp refuses --qlora", async () => {
    const sb = sandbox();
    for (const args of [["setup", "python", "--vulkan"], ["setup", "python", "-j", "2"], ["setup", "llama.cpp", "--qlora"], ["setup", "python", "--cuda", "--cpu"]]) {
      const r = await slm(args, sb);
      expect(r.exitCode, `${args.join(" ")}: ${r.all}`).toBe(2);
    }
    expect(leftovers(sb)).toEqual([]);
  });
});
