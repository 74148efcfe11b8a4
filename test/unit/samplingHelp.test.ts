import { Command } from "commander";
import { describe, expect, it } from "vitest";
import { DISTILL_MAX_TOKENS } from "../../src/backends/distill/generate.js";
import { EVAL_MAX_TOKENS } from "../../src/backends/eval/generation.js";
import { SAMPLING_DEFAULTS } from "../../src/backends/llama/generate.js";
import { register as distill } from "../../src/commands/distill.js";
import { register as evalCmd } from "../../src/commands/eval.js";
import { register as run } from "../../src/commands/run.js";

/** The help line of one option, whitespace folded (commander wraps descriptions). */
function optionHelp(register: (p: Command) => void, name: string, flag: string): string {
  const program = new Command();
  register(program);
  const cmd = program.commands.find((c) => c.name() === name)!;
  const opt = cmd.options.find((o) => o.long === flag)!;
  return opt.description;
}

describe("the sampling flags' help states each command's own defaults", () => {
  it("distill and eval answer greedily with at most their token cap: their help says so, not run's 0.8", () => {
    for (const [register, name, cap] of [[distill, "distill", DISTILL_MAX_TOKENS], [evalCmd, "eval", EVAL_MAX_TOKENS]] as const) {
      expect(optionHelp(register, name, "--temperature")).toContain("(default 0: greedy)");
      expect(optionHelp(register, name, "--temperature")).not.toContain(String(SAMPLING_DEFAULTS.temperature));
      expect(optionHelp(register, name, "--max-tokens")).toContain(`(default ${cap})`);
    }
  });

  it("run samples at the runtime's default temperature until the model stops", () => {
    expect(optionHelp(run, "run", "--temperature")).toContain(`(default ${SAMPLING_DEFAULTS.temperature})`);
    expect(optionHelp(run, "run", "--max-tokens")).toContain("until the model stops");
  });
});
