import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { compileRegex, isCorrect, normalise, pickChoices, wilson } from "../../src/backends/eval/match.js";
import { limitTask, readTask } from "../../src/backends/eval/tasks.js";
import { EXIT, SlmError } from "../../src/core/errors.js";
import { FIXTURE } from "../helpers/cli.js";

const dir = mkdtempSync(path.join(tmpdir(), "slm-eval-tasks-"));
function file(name: string, lines: unknown[]): string {
  const p = path.join(dir, name);
  writeFileSync(p, lines.map((l) => (typeof l === "string" ? l : JSON.stringify(l))).join("\n") + "\n");
  return p;
}

function thrown(fn: () => unknown): SlmError {
  try {
    fn();
  } catch (err) {
    if (err instanceof SlmError) return err;
    throw err;
  }
  throw new Error("did not throw");
}

describe("answer matching", () => {
  it("normalises case, whitespace and trailing punctuation, not inner punctuation", () => {
    expect(normalise("  The   Answer is\nParis.  ")).toBe("the answer is paris");
    expect(normalise("46\n")).toBe("46");
    expect(normalise("3.5")).toBe("3.5");
    expect(normalise("ｆｕｌｌ width!?")).toBe("full width");
  });

  it("exact, contains and regex", () => {
    expect(isCorrect(" Paris.", ["paris"], "exact")).toBe(true);
    expect(isCorrect("Paris, France", ["paris"], "exact")).toBe(false);
    expect(isCorrect("It is Paris, France.", ["paris"], "contains")).toBe(true);
    expect(isCorrect("46", ["45", "46"], "exact")).toBe(true);
    expect(isCorrect("The answer: 46 apples", ["\\b46\\b"], "regex")).toBe(true);
    expect(isCorrect("The answer: 146", ["\\b46\\b"], "regex")).toBe(false);
    expect(isCorrect("PARIS", ["/^paris$/i"], "regex")).toBe(true);
    expect(isCorrect("PARIS", ["^paris$"], "regex")).toBe(false);
    expect(() => compileRegex("(")).toThrow();
  });

  it("Wilson intervals match the textbook values", () => {
    const a = wilson(5, 10);
    expect(a.value).toBe(0.5);
    expect(a.low).toBeCloseTo(0.2366, 4);
    expect(a.high).toBeCloseTo(0.7634, 4);
    const z = wilson(0, 10);
    expect(z.low).toBe(0);
    expect(z.high).toBeCloseTo(0.2775, 4);
    const all = wilson(500, 500);
    expect(all.high).toBe(1);
    expect(all.low).toBeCloseTo(0.99239, 4);
    expect(wilson(0, 0)).toMatchObject({ value: 0, n: 0 });
  });

  it("acc takes the most likely choice, acc_norm the most likely per byte", () => {
    // "ab" has 2 bytes: -3/2 = -1.5 per byte beats "c" at -2 per byte, though -2 > -3 in total.
    expect(pickChoices([-2, -3], ["c", "ab"])).toEqual({ acc: 0, accNorm: 1 });
    expect(pickChoices([-1, -1], ["x", "y"])).toEqual({ acc: 0, accNorm: 0 });
    // Bytes, not characters: "é" is 2 bytes in UTF-8.
    expect(pickChoices([-3, -2], ["éé", "a"])).toEqual({ acc: 1, accNorm: 0 });
  });
});

describe("task files", () => {
  it("reads the fixture's chat data as generation questions, the last assistant turn as the answer", () => {
    const t = readTask(path.join(FIXTURE, "data", "add-eval.jsonl"));
    expect(t.kind).toBe("generate");
    expect(t.name).toBe("add-eval");
    expect(t.total).toBe(500);
    expect(t.sha256).toMatch(/^[0-9a-f]{64}$/);
    if (t.kind !== "generate") throw new Error("kind");
    expect(t.items[0]).toEqual({ line: 1, messages: [{ role: "user", content: "13+54" }], answers: ["67"], match: undefined });
    expect(limitTask(t, 10).items).toHaveLength(10);
  });

  it("reads prompt/answer(s), per-line match and multiple choice", () => {
    const g = readTask(file("g.jsonl", [{ prompt: "2+2", answer: 4 }, { messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Capital of France?" }], answers: ["Paris", "paris, france"], match: "contains" }, ""]));
    expect(g.kind).toBe("generate");
    expect(g.items).toHaveLength(2);
    expect(g.items[0]).toMatchObject({ answers: ["4"], messages: [{ role: "user", content: "2+2" }] });
    expect(g.items[1]).toMatchObject({ line: 2, match: "contains" });
    const c = readTask(file("c.jsonl", [{ question: "1+1", choices: ["2", "3"], answer: 0 }]));
    expect(c.kind).toBe("choice");
    expect(c.items[0]).toMatchObject({ choices: ["2", "3"], answer: 0 });
  });

  it("names the file and the line of every kind of bad line (usage error)", () => {
    const cases: [unknown[], RegExp][] = [
      [[{ prompt: "a", answer: "b" }, "{not json"], /bad\.jsonl line 2: bad JSON/],
      [[[1, 2]], /line 1: not a JSON object/],
      [[{ prompt: "a" }], /line 1: no "answer"/],
      [[{ answer: "a" }], /line 1: needs "prompt"/],
      [[{ messages: [{ role: "robot", content: "x" }], answer: "a" }], /line 1: message 1 has role "robot"/],
      [[{ messages: [{ role: "user", content: "q" }, { role: "assistant", content: "a" }], answer: "a" }], /must end with a user message/],
      [[{ question: "q", choices: ["a"], answer: 0 }], /"choices" must be an array of at least two/],
      [[{ question: "q", choices: ["a", "b"], answer: 2 }], /"answer" must be the index of the right choice, 0 to 1 \(got 2\)/],
      [[{ prompt: "q", answer: "a", match: "fuzzy" }], /"match" must be/],
      [[{ prompt: "q", answer: "(" , match: "regex" }], /line 1: answer "\(" is not a valid regular expression/],
      [[{ prompt: "q", answer: "a" }, { question: "q", choices: ["a", "b"], answer: 0 }], /line 2: mixes multiple-choice and generation/],
      [[""], /has no questions/],
    ];
    for (const [lines, message] of cases) {
      const err = thrown(() => readTask(file("bad.jsonl", lines)));
      expect(err.exitCode, String(message)).toBe(EXIT.usage);
      expect(err.message).toMatch(message);
    }
  });

  it("checks answers as regexes when --match regex applies to the whole file", () => {
    const f = file("r.jsonl", [{ prompt: "q", answer: "[" }]);
    expect(readTask(f, "exact").kind).toBe("generate");
    expect(thrown(() => readTask(f, "regex")).message).toMatch(/line 1: answer "\[" is not a valid regular expression/);
  });

  it("a missing file is not found (exit 3), a folder a usage error", () => {
    expect(thrown(() => readTask(path.join(dir, "nope.jsonl"))).exitCode).toBe(EXIT.notFound);
    expect(thrown(() => readTask(dir)).exitCode).toBe(EXIT.usage);
  });
});
