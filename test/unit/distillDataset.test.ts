import { appendFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type GenerationKey, appendAnswer, datasetFiles, finishDataset, finishedDataset, openGeneration } from "../../src/backends/distill/dataset.js";
import { teacherTokens } from "../../src/backends/distill/generate.js";
import { readPrompts, readRelabelPrompts } from "../../src/backends/distill/prompts.js";
import { UsageError } from "../../src/core/errors.js";

const tmp = mkdtempSync(path.join(tmpdir(), "slm-distill-"));
let n = 0;
function file(name: string, text: string): string {
  const f = path.join(tmp, `${n++}-${name}`);
  writeFileSync(f, text);
  return f;
}

const key = (over: Partial<GenerationKey> = {}): GenerationKey => ({
  teacher: { name: "tiny-arith", path: "/m/tiny.gguf", adapters: [{ path: "/a/sub.gguf", scale: 1 }] },
  prompts: { sha256: "ab", count: 3, relabel: false },
  sampling: { temperature: 0, maxTokens: 256 },
  kdLogprobs: null,
  ...over,
});
const rec = (q: string, a: string) => ({ messages: [{ role: "user", content: q }, { role: "assistant", content: a }] });

let savedHome: string | undefined;
beforeEach(() => {
  savedHome = process.env.SLM_HOME;
  process.env.SLM_HOME = mkdtempSync(path.join(tmp, "home-"));
});
afterEach(() => {
  process.env.SLM_HOME = savedHome;
});

describe("the teacher's dataset: partial answers, resume, finish", () => {
  it("a stopped generation resumes with the answers it kept; a torn last line is answered again", () => {
    const f = datasetFiles("tiny-arith+distill");
    const first = openGeneration(f, key());
    expect(first.done.size).toBe(0);
    appendAnswer(f, 2, rec("3-1", "2"), 2, 0.5);
    appendAnswer(f, 0, rec("9-2", "7"), 2, 0.9);
    // A crash in the middle of a write leaves a line without its end.
    appendFileSync(f.partial, '{"i":1,"record":{"messages":[{"ro');
    const again = openGeneration(f, key());
    expect([...again.done.keys()].sort()).toEqual([0, 2]);
    expect(again.done.get(2)!.record).toEqual(rec("3-1", "2"));
    expect(again.seconds).toBe(0.9);
    expect(again.createdAt).toBe(first.createdAt);
    expect(existsSync(f.data)).toBe(false);
  });

  it("a stopped generation is refused with other prompts, sampling, teacher or K, naming which", () => {
    const f = datasetFiles("s+distill");
    openGeneration(f, key());
    const refusal = (k: GenerationKey) => {
      try {
        openGeneration(f, k);
      } catch (err) {
        expect(err).toBeInstanceOf(UsageError);
        return `${(err as UsageError).message} ${(err as UsageError).hint}`;
      }
      throw new Error("not refused");
    };
    expect(refusal(key({ prompts: { sha256: "cd", count: 3, relabel: false } }))).toMatch(/started with other prompts.*remove .*s\+distill/);
    expect(refusal(key({ sampling: { temperature: 0.7, maxTokens: 256 } }))).toMatch(/other sampling options/);
    expect(refusal(key({ teacher: { name: "tiny-arith", path: "/m/tiny.gguf", adapters: [] } }))).toMatch(/another teacher/);
    expect(refusal(key({ kdLogprobs: 4 }))).toMatch(/--kd-logprobs/);
  });

  it("finishing writes data.jsonl in prompt order and the lineage, and drops the partial state", () => {
    const f = datasetFiles("s+done");
    const p = openGeneration(f, key());
    appendAnswer(f, 1, rec("b", "2"), 1, 1);
    const records = [rec("a", "1"), rec("b", "2"), rec("c", "3")];
    const lineage = finishDataset(f, key(), records, { promptsFile: "/p.txt", generatedTokens: 6, seconds: 1.234, createdAt: p.createdAt });
    expect(readFileSync(f.data, "utf8").trim().split("\n").map((l) => JSON.parse(l) as unknown)).toEqual(records);
    expect(JSON.parse(readFileSync(f.lineage, "utf8"))).toEqual(lineage);
    expect(lineage).toMatchObject({ name: "s+done", records: 3, seconds: 1.23, kdLogprobs: null, teacher: key().teacher });
    expect(existsSync(f.partial) || existsSync(f.generation)).toBe(false);
    expect(finishedDataset(f, key())).toEqual(lineage);
    expect(() => finishedDataset(f, key({ kdLogprobs: 8 }))).toThrow(/was made with other --kd-logprobs/);
  });

  it("dataset names cannot leave $SLM_HOME/datasets", () => {
    expect(() => datasetFiles("../x")).toThrow(UsageError);
    expect(() => datasetFiles("a/b")).toThrow(UsageError);
  });
});

describe("the prompts file", () => {
  it("reads .txt lines as user turns, JSONL conversations ending with the user, and {prompt} lines", () => {
    expect(readPrompts(file("p.txt", "12-3\n\n45-6\n")).items).toEqual([{ messages: [{ role: "user", content: "12-3" }] }, { messages: [{ role: "user", content: "45-6" }] }]);
    const chat = { messages: [{ role: "system", content: "Be brief" }, { role: "user", content: "9-1" }] };
    expect(readPrompts(file("c.jsonl", `${JSON.stringify(chat)}\n`)).items).toEqual([chat]);
    expect(readPrompts(file("r.jsonl", '{"prompt":"Once upon"}\n')).items).toEqual([{ prompt: "Once upon" }]);
  });

  it("refuses answered examples without --relabel, naming the line", () => {
    const f = file("a.jsonl", `${JSON.stringify({ messages: [{ role: "user", content: "1-1" }] })}\n${JSON.stringify(rec("2-1", "1"))}\n`);
    expect(() => readPrompts(f)).toThrow(/a\.jsonl line 2: the conversation ends with the assistant's answer.*--relabel/);
    expect(() => readPrompts(file("pc.jsonl", '{"prompt":"a","completion":"b"}\n'))).toThrow(/line 1: this line has an answer already/);
    expect(() => readPrompts(file("e.txt", "\n\n"))).toThrow(/is empty/);
  });

  it("--relabel drops each example's last answer, keeping earlier turns", () => {
    const multi = { messages: [{ role: "user", content: "1+1" }, { role: "assistant", content: "2" }, { role: "user", content: "2+2" }, { role: "assistant", content: "5" }] };
    const p = readRelabelPrompts(file("d.jsonl", `${JSON.stringify(multi)}\n`));
    expect(p.items).toEqual([{ messages: multi.messages.slice(0, 3) }]);
    expect(readRelabelPrompts(file("pc.jsonl", '{"prompt":"a","completion":"b"}\n')).items).toEqual([{ prompt: "a" }]);
    expect(() => readRelabelPrompts(file("t.jsonl", '{"text":"abc"}\n'))).toThrow(/no answer for the teacher to replace/);
  });
});

describe("contract 1's teacher field", () => {
  it("holds each generated token, its top ids and their log-probs in order, the end token last", () => {
    const alt = (token: number, logprob: number) => ({ token, text: String(token), logprob });
    const t = teacherTokens([
      { ...alt(7, -0.1), top: [alt(7, -0.1), alt(8, -2.5)] },
      { ...alt(2, -0.01), top: [alt(2, -0.01), alt(7, -5)], end: true },
    ]);
    expect(t).toEqual({ tokens: [7, 2], top_ids: [[7, 8], [2, 7]], top_logprobs: [[-0.1, -2.5], [-0.01, -5]] });
  });
});
