import { Command } from "commander";
import { describe, expect, it } from "vitest";
import { register as registerDistill } from "../../src/commands/distill.js";
import { register as registerEval } from "../../src/commands/eval.js";
import { register as registerRun } from "../../src/commands/run.js";
import { DISTILL_MAX_TOKENS } from "../../src/backends/distill/generate.js";
import { EVAL_MAX_TOKENS } from "../../src/backends/eval/generation.js";

/** The sampling defaults each command's --help states are the ones its backend applies. */
function help(register: (p: Command) => void, verb: string): string {
  const program = new Command();
  register(program);
  return program.commands.find((c) => c.name() === verb)!.helpInformation().replace(/\s+/g, " ");
}

describe("sampling defaults in --help", () => {
  it("eval and distill answer greedily with a token cap, and say so", () => {
    for (const [verb, register, cap] of [["eval", registerEval, EVAL_MAX_TOKENS], ["distill", registerDistill, DISTILL_MAX_TOKENS]] as const) {
      const text = help(register, verb);
      expect(text, verb).toMatch(/--temperature <t> randomness; 0 = greedy and repeatable \(default 0\)/);
      expect(text, verb).toContain(`most tokens to generate (default: ${cap})`);
    }
  });

  it("run keeps its sampling default", () => {
    expect(help(registerRun, "run")).toMatch(/\(default 0\.8\)/);
  });
});
