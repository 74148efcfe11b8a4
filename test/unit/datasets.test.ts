import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { DatasetLineError, normaliseExample } from "../../src/core/datasets/formats.js";
import { loadDataset, toJsonl } from "../../src/core/datasets/load.js";
import { splitHoldout } from "../../src/core/datasets/split.js";
import { EXIT, NotFoundError, UsageError } from "../../src/core/errors.js";
import { FIXTURE } from "../helpers/cli.js";

const tmp = mkdtempSync(path.join(tmpdir(), "slm-datasets-"));
let n = 0;
function file(lines: (string | object)[]): string {
  const f = path.join(tmp, `data-${n++}.jsonl`);
  writeFileSync(f, lines.map((l) => (typeof l === "string" ? l : JSON.stringify(l))).join("\n") + "\n");
  return f;
}
const chat = (q: string, a: string) => ({ messages: [{ role: "user", content: q }, { role: "assistant", content: a }] });

/** The message of the usage error that loading `lines` throws. */
function problem(lines: (string | object)[]): string {
  const f = file(lines);
  try {
    loadDataset(f, { requireAnswer: true });
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).exitCode).toBe(EXIT.usage);
    expect((err as UsageError).message).toContain(path.basename(f));
    return (err as Error).message;
  }
  throw new Error("no error");
}

describe("dataset formats", () => {
  it("detects and normalises each format", () => {
    const norm = (o: object) => normaliseExample(o, "f.jsonl", 1, { requireAnswer: true });
    expect(norm(chat("12+34", "46"))).toEqual({ format: "messages", example: chat("12+34", "46") });
    expect(norm({ instruction: "Add", input: "1+1", output: "2" })).toEqual({ format: "alpaca", example: chat("Add\n\n1+1", "2") });
    expect(norm({ instruction: "Add 1+1", input: "", output: "2", system: "Be brief" })).toEqual({
      format: "alpaca",
      example: { messages: [{ role: "system", content: "Be brief" }, { role: "user", content: "Add 1+1" }, { role: "assistant", content: "2" }] },
    });
    expect(norm({ conversations: [{ from: "system", value: "s" }, { from: "human", value: "q" }, { from: "gpt", value: "a" }] })).toEqual({
      format: "sharegpt",
      example: { messages: [{ role: "system", content: "s" }, { role: "user", content: "q" }, { role: "assistant", content: "a" }] },
    });
    expect(norm({ conversations: [{ from: "user", value: "q" }, { from: "assistant", value: "a" }] }).example).toEqual(chat("q", "a"));
    expect(norm({ prompt: "2+2=", completion: "4" })).toEqual({ format: "prompt-completion", example: { prompt: "2+2=", completion: "4" } });
    expect(norm({ text: "Once upon a time" })).toEqual({ format: "text", example: { text: "Once upon a time" } });
  });

  it("reads the fixture's data: 4,050 conversations, hashed", () => {
    const f = path.join(FIXTURE, "data", "sub-train.jsonl");
    const d = loadDataset(f, { requireAnswer: true });
    expect(d.format).toBe("messages");
    expect(d.examples).toHaveLength(4050);
    expect(d.examples[0]).toEqual(chat("44-38", "6"));
    expect(d.sha256).toBe(createHash("sha256").update(readFileSync(f)).digest("hex"));
    // Normalised messages are written back as they came.
    expect(toJsonl(d.examples.slice(0, 2))).toBe('{"messages":[{"role":"user","content":"44-38"},{"role":"assistant","content":"6"}]}\n{"messages":[{"role":"user","content":"97-24"},{"role":"assistant","content":"73"}]}\n');
  });

  it("skips blank lines and keeps counting lines through them", () => {
    expect(loadDataset(file([chat("1+1", "2"), "", "   ", chat("2+2", "4")])).examples).toHaveLength(2);
    expect(problem([chat("1+1", "2"), "", "{oops"])).toMatch(/line 3: bad JSON/);
  });
});

describe("dataset validation names the file, the line and the problem", () => {
  it("bad JSON", () => {
    expect(problem([chat("1+1", "2"), '{"messages": [']).match(/^data-\d+\.jsonl line 2: bad JSON \(/)).toBeTruthy();
  });
  it("not an object, unknown shape", () => {
    expect(problem(["[1,2]"])).toMatch(/line 1: not a JSON object/);
    expect(problem([{ question: "q", answer: "a" }])).toMatch(/line 1: unknown shape \(keys: question, answer\)/);
  });
  it("mixed shapes", () => {
    expect(problem([chat("1+1", "2"), { text: "hello" }])).toMatch(/line 2: mixed shapes: this line is text but line 1 is messages/);
  });
  it("empty content", () => {
    expect(problem([{ messages: [{ role: "user", content: "q" }, { role: "assistant", content: "  " }] }])).toMatch(/line 1: message 2 \(assistant\) has empty content/);
    expect(problem([{ prompt: "", completion: "x" }])).toMatch(/line 1: "prompt" must be a non-empty string/);
    expect(problem([{ text: 5 }])).toMatch(/line 1: "text" must be a non-empty string/);
    expect(problem([{ instruction: "do", output: "" }])).toMatch(/"output" must be a non-empty string/);
    expect(problem([{ messages: [] }])).toMatch(/"messages" must be a non-empty array/);
  });
  it("unknown roles", () => {
    expect(problem([{ messages: [{ role: "wizard", content: "a" }] }])).toMatch(/message 1 has an unknown role "wizard"/);
    expect(problem([{ conversations: [{ from: "narrator", value: "a" }] }])).toMatch(/message 1 has an unknown from "narrator"/);
  });
  it("roles out of order", () => {
    expect(problem([{ messages: [{ role: "assistant", content: "a" }, { role: "user", content: "q" }] }])).toMatch(/line 1: roles out of order: message 1 is "assistant" where "user" should be/);
    expect(problem([{ messages: [{ role: "user", content: "q" }, { role: "system", content: "s" }, { role: "assistant", content: "a" }] }])).toMatch(/roles out of order: message 2 is "system"/);
    expect(problem([{ messages: [{ role: "user", content: "q" }, { role: "user", content: "q2" }] }])).toMatch(/roles out of order: message 2 is "user"/);
  });
  it("no assistant turn, or a trailing user turn", () => {
    expect(problem([{ messages: [{ role: "system", content: "s" }, { role: "user", content: "q" }] }])).toMatch(/line 1: no assistant turn/);
    expect(problem([{ messages: [{ role: "system", content: "s" }] }])).toMatch(/no user message/);
    expect(problem([{ messages: [{ role: "user", content: "q" }, { role: "assistant", content: "a" }, { role: "user", content: "q2" }] }])).toMatch(/ends with a user message/);
  });
  it("lists several bad lines at once, at most five", () => {
    const msg = problem([chat("1+1", "2"), "x", "y", { foo: 1 }, "z", "w", "v", "u"]);
    expect(msg).toMatch(/has 7 bad line\(s\)/);
    expect(msg).toMatch(/line 2: bad JSON/);
    expect(msg).toMatch(/line 4: unknown shape/);
    expect(msg).toMatch(/… and 2 more line\(s\) with problems/);
    expect(msg).not.toMatch(/line 8:/);
  });
  it("an empty file, a missing file, a folder", () => {
    expect(problem(["", ""])).toMatch(/is empty/);
    expect(() => loadDataset(path.join(tmp, "nope.jsonl"))).toThrow(NotFoundError);
    expect(() => loadDataset(tmp)).toThrow(/is a folder/);
  });
  it("a line error carries its file and line for callers", () => {
    try {
      normaliseExample({ messages: [{ role: "user", content: "" }] }, "/x/d.jsonl", 9);
    } catch (err) {
      expect(err).toBeInstanceOf(DatasetLineError);
      expect(err).toMatchObject({ file: "/x/d.jsonl", line: 9 });
    }
  });
});

describe("the teacher's log-probabilities (slm distill --kd-logprobs) travel with their answers", () => {
  const teacher = { tokens: [288, 284, 2], top_ids: [[288, 283], [284, 283], [2, 287]], top_logprobs: [[-0.001, -7.2], [-0.02, -4], [0, -14.1]] };

  it("from conversations and prompt/completion lines into the recipe's train.jsonl, unchanged", () => {
    for (const line of [{ ...chat("97-24", "73"), teacher }, { prompt: "97-24=", completion: "73", teacher }]) {
      const d = loadDataset(file([line]), { requireAnswer: true });
      const written = JSON.parse(toJsonl(d.examples).trim()) as Record<string, unknown>;
      expect(written).toEqual(line);
    }
    const plain = loadDataset(file([chat("1-1", "0")]), { requireAnswer: true });
    expect(toJsonl(plain.examples)).not.toContain("teacher");
  });

  it("refuses a teacher field that is not the teacher's distribution, or has no answer to go with", () => {
    expect(problem([{ text: "97-24=73", teacher }])).toMatch(/line 1: "teacher" needs an answer/);
    expect(problem([{ ...chat("1-1", "0"), teacher: [] }])).toMatch(/line 1: "teacher" must be an object/);
    expect(problem([{ ...chat("1-1", "0"), teacher: { ...teacher, top_ids: teacher.top_ids.slice(1) } }])).toMatch(/arrays of the same length/);
    expect(problem([{ ...chat("1-1", "0"), teacher: { ...teacher, top_logprobs: [[-0.1, 0.7], [-1, -2], [0, -3]] } }])).toMatch(/"teacher.top_logprobs\[0\]" must hold one log-probability/);
    expect(problem([{ ...chat("1-1", "0"), teacher: { ...teacher, tokens: [1.5, 2, 3] } }])).toMatch(/"teacher.tokens\[0\]" is not a token id/);
  });
});

describe("--val-split", () => {
  const items = Array.from({ length: 1000 }, (_, i) => i);
  it("holds out the fraction, disjoint, in file order, the same for the same seed", () => {
    const a = splitHoldout(items, 0.1, 42);
    expect(a.held).toHaveLength(100);
    expect(a.train).toHaveLength(900);
    expect(new Set([...a.train, ...a.held]).size).toBe(1000);
    expect(a.held).toEqual([...a.held].sort((x, y) => x - y));
    expect(splitHoldout(items, 0.1, 42)).toEqual(a);
    expect(splitHoldout(items, 0.1, 43).held).not.toEqual(a.held);
    // Spread over the file, not its head.
    expect(Math.max(...a.held)).toBeGreaterThan(800);
  });
  it("refuses splits that leave nothing on one side", () => {
    expect(() => splitHoldout([1, 2, 3], 0.1, 1)).toThrow(/leaves no validation example/);
    expect(() => splitHoldout([1, 2], 0.9, 1)).toThrow(/nothing to train on/);
    expect(() => splitHoldout(items, 1.5, 1)).toThrow(UsageError);
  });
});
