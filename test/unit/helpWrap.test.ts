import { describe, expect, it } from "vitest";
import { wrapCommand, wrapHelp } from "../../src/ui/helpWrap.js";

const width = (text: string) => Math.max(...text.split("\n").map((l) => l.length));

describe("wrapHelp", () => {
  it("refills a paragraph that holds a line too wide, and leaves paragraphs that fit as written", () => {
    const fits = "Short line one.\nShort line two.";
    const wide = `${"word ".repeat(30).trim()}\nnext line of the same paragraph.`;
    const out = wrapHelp(`${fits}\n\n${wide}`, 40);
    expect(out.startsWith(`${fits}\n\n`)).toBe(true);
    expect(width(out)).toBeLessThanOrEqual(40);
    // No word lost or split, and the second line joined the refilled paragraph.
    expect(out.slice(fits.length + 2).split(/\s+/)).toEqual(wide.split(/\s+/));
  });

  it("continues a long example command with ' \\' and keeps quoted arguments whole", () => {
    const line = `  slm run tiny-arith "a prompt with spaces in it" --temperature 0 --max-tokens 12 --seed 3`;
    const out = wrapHelp(line, 40).split("\n");
    expect(width(out.join("\n"))).toBeLessThanOrEqual(40);
    expect(out.slice(0, -1).every((l) => l.endsWith(" \\"))).toBe(true);
    expect(out.slice(1).every((l) => l.startsWith("      "))).toBe(true);
    // The shell reads the same words back.
    const joined = out.map((l) => l.replace(/ \\$/, "").trim()).join(" ");
    expect(joined).toBe(line.trim());
    expect(out.some((l) => l.includes(`"a prompt with spaces in it"`))).toBe(true);
  });

  it("moves an example's comment to its own line above it, since a comment cannot be continued", () => {
    const out = wrapHelp("  slm serve --port 9000 --host 0.0.0.0      # every interface, port 9000", 50).split("\n");
    expect(out[0]).toBe("  # every interface, port 9000");
    expect(out[1]).toBe("  slm serve --port 9000 --host 0.0.0.0");
  });

  it("keeps a word longer than the width whole", () => {
    const long = "x".repeat(60);
    expect(wrapHelp(`see ${long} here`, 40).split("\n")).toEqual(["see", long, "here"]);
  });
});

describe("wrapCommand (a printed shell command, e.g. finetune --prepare's torchrun line)", () => {
  it("continues any command with ' \\' within the width, keeping quoted arguments whole", () => {
    const line = "  torchrun --nnodes 2 --nproc-per-node '<GPUs per node>' --node-rank '<0 or 1>' --master-addr '<address of node 0>' --master-port 29500 /a/long/run/folder/recipe/finetune_lora.py --config /a/long/run/folder/config.json";
    const out = wrapCommand(line, 80);
    expect(out.length).toBeGreaterThan(1);
    expect(out.every((l) => l.length <= 80)).toBe(true);
    expect(out.slice(0, -1).every((l) => l.endsWith(" \\"))).toBe(true);
    expect(out.join("\n")).toContain("'<address of node 0>'");
    expect(out.map((l) => l.replace(/ \\$/, "").trim()).join(" ")).toBe(line.trim());
  });
});
