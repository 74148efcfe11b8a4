import { describe, expect, it } from "vitest";
import { lastJson, sandbox, slm } from "../helpers/cli.js";

describe("the slm command line", () => {
  const sb = sandbox();

  it("explains itself with --help and exits 0", async () => {
    const r = await slm(["--help"], sb);
    expect(r.exitCode).toBe(0);
    for (const cmd of ["pull", "list", "info", "rm", "doctor"]) expect(r.stdout).toMatch(new RegExp(`^  ${cmd}\\b`, "m"));
    expect(r.stdout).toContain("Exit codes");
    const pull = await slm(["pull", "--help"], sb);
    expect(pull.stdout).toContain("--connections");
    expect(pull.stdout).toContain("Examples:");
  });

  it("fits every command's --help to 80 columns when stdout is not a terminal", async () => {
    const top = await slm(["--help"], sb);
    const names = [...top.stdout.matchAll(/^  ([a-z]+)[| ]/gm)].map((m) => m[1]!).filter((n) => n !== "help");
    expect(names).toContain("serve");
    for (const args of [[], ...names.map((n) => [n])]) {
      const r = await slm([...args, "--help"], sb);
      expect(r.exitCode, r.all).toBe(0);
      // Characters, not bytes ("—" is one column); a single word longer than the line cannot be broken.
      const wide = r.stdout.split("\n").filter((l) => [...l].length > 80 && /\s\S/.test(l.trim()));
      expect(wide, `slm ${args.join(" ")} --help`).toEqual([]);
    }
  });

  it("prints its version", async () => {
    const r = await slm(["--version"], sb);
    expect(r.exitCode).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it("answers usage mistakes with exit code 2 and no stack trace", async () => {
    for (const args of [["pull"], ["pull", "x", "--connections", "0"], ["pull", "x", "--format", "safetensors"], ["bogus"], ["list", "--nope"]]) {
      const r = await slm(args, sb);
      expect(r.exitCode, args.join(" ")).toBe(2);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    const typo = await slm(["pul", "phi-3"], sb);
    expect(typo.stderr).toContain("Did you mean pull?");
  });

  it("ends --json output with an error line that carries the exit code and a hint", async () => {
    const r = await slm(["info", "phi-3x", "--json"], sb);
    expect(r.exitCode).toBe(3);
    const last = lastJson(r.stdout);
    expect(last.type).toBe("error");
    expect(last.error).toMatchObject({ exitCode: 3, hint: expect.stringContaining("phi-3") });
  });

  it("says a catalog model must be pulled before info can read it", async () => {
    const r = await slm(["info", "qwen2.5-0.5b"], sb);
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toContain("slm pull qwen2.5-0.5b");
  });

  it("lists the catalog with every model the foundation issue names", async () => {
    const r = await slm(["list", "--catalog", "--json"], sb);
    const ids = (lastJson(r.stdout).data as { id: string }[]).map((e) => e.id);
    for (const id of ["phi-3-mini", "phi-3.5-mini", "llama-3.2-1b", "llama-3.2-3b", "qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-3b", "smollm2-135m", "smollm2-360m", "smollm2-1.7b", "tinyllama", "gemma-2-2b", "mistral-7b", "tiny-arith"]) {
      expect(ids).toContain(id);
    }
  });
});
