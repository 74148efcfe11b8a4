import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { writeLlamaGguf } from "../../bench/ggufWriter.js";
import { type GgufArray, readGgufHeader } from "../../src/backends/gguf/reader.js";
import { FIXTURE, interruptWhen, lastJson, registry, sandbox, slm } from "../helpers/cli.js";

/**
 * `slm distill`'s teacher side on the fixture, without Python (--data-only): tiny-arith with the
 * subtraction adapter answers subtraction problems on parallel slots; the answers, their top-K
 * log-probabilities, Ctrl+C and the resumed run, and the inputs refused before anything runs.
 */
const ADAPTER = path.join(FIXTURE, "gguf", "lora-sub-f32.gguf");
const tmp = mkdtempSync(path.join(tmpdir(), "slm-distill-e2e-"));
const questions = readFileSync(path.join(FIXTURE, "data", "sub-eval.jsonl"), "utf8")
  .trim()
  .split("\n")
  .map((l) => (JSON.parse(l) as { messages: { content: string }[] }).messages[0]!.content);
/** The fixture's vocabulary (its digits are single tokens; </s> is 2: test/fixtures/tiny-arith/README.md). */
const VOCAB = (readGgufHeader(path.join(FIXTURE, "gguf", "tiny-arith-f32.gguf"), { arrayLimit: 1000 }).metadata.get("tokenizer.ggml.tokens") as GgufArray).values!.map(String);
const EOS = 2;

function promptsFile(name: string, qs: string[]): string {
  const f = path.join(tmp, name);
  writeFileSync(f, qs.join("\n") + "\n");
  return f;
}

type Msg = { role: string; content: string };
interface Rec {
  messages: Msg[];
  teacher?: { tokens: number[]; top_ids: number[][]; top_logprobs: number[][] };
}
const records = (file: string): Rec[] => readFileSync(file, "utf8").trim().split("\n").map((l) => JSON.parse(l) as Rec);
const difference = (q: string) => String(eval(q) as number);
const teacher = ["distill", "--teacher", "tiny-arith", "--teacher-lora", ADAPTER, "--student", "tiny-arith", "--data-only"];

describe("slm distill: the teacher's dataset", () => {
  it("answers on parallel slots with top-K log-probs per token, the dataset and its lineage in $SLM_HOME/datasets", async () => {
    const sb = sandbox();
    const qs = questions.slice(0, 40);
    const prompts = promptsFile("forty.txt", qs);
    const r = await slm([...teacher, "--prompts", prompts, "--kd-logprobs", "5", "--parallel", "4", "--json"], sb);
    expect(r.exitCode, r.all).toBe(0);
    const events = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { type: string; id?: string; current?: number; total?: number; unit?: string });
    const progress = events.filter((e) => e.type === "progress" && e.id === "distill:generate");
    expect(progress.at(-1)).toMatchObject({ current: 40, total: 40, unit: "examples" });
    const res = lastJson(r.stdout).data as { dataset: { path: string; records: number }; generation: { answered: number; parallel: number } };
    const dir = path.join(sb.home, "datasets", "tiny-arith+distill");
    expect(res.dataset.path).toBe(path.join(dir, "data.jsonl"));
    expect(res.generation).toMatchObject({ answered: 40, parallel: 4 });
    expect(readdirSync(dir).sort()).toEqual(["data.jsonl", "dataset.json"]);
    const recs = records(res.dataset.path);
    expect(recs.map((x) => x.messages[0]!.content)).toEqual(qs);
    // The adapter makes the model subtract (99 % on sub-eval): its answers are the differences.
    const right = recs.filter((x, i) => x.messages[1]!.content === difference(qs[i]!)).length;
    expect(right).toBeGreaterThanOrEqual(38);
    for (const x of recs) {
      const t = x.teacher!;
      const answer = x.messages[1]!.content;
      // One entry per generated token: the answer's digits, then </s>, the end of generation.
      expect(t.tokens.at(-1)).toBe(EOS);
      expect(t.tokens.slice(0, -1).map((id) => VOCAB[id]).join("")).toBe(answer);
      t.top_ids.forEach((ids, k) => {
        const lp = t.top_logprobs[k]!;
        expect(ids).toHaveLength(5);
        expect(ids[0]).toBe(t.tokens[k]); // greedy: the token is the most likely one
        expect([...lp].sort((a, b) => b - a)).toEqual(lp);
        // ln p of a full-vocabulary softmax: K of them sum to at most 1.
        expect(lp.reduce((s, v) => s + Math.exp(v), 0)).toBeLessThanOrEqual(1 + 1e-6);
      });
    }
    const lineage = JSON.parse(readFileSync(path.join(dir, "dataset.json"), "utf8")) as Record<string, unknown>;
    expect(lineage).toMatchObject({ name: "tiny-arith+distill", teacher: { name: "tiny-arith", adapters: [{ scale: 1 }] }, prompts: { count: 40, relabel: false }, sampling: { temperature: 0, maxTokens: 256 }, kdLogprobs: 5, records: 40, promptsFile: prompts });
    expect(registry(sb).models).toEqual({});
    // Asked again: the dataset is reused, and the way on names the student (not "<student>") and keeps the lineage.
    const again = await slm([...teacher, "--prompts", prompts, "--kd-logprobs", "5", "--parallel", "4"], sb);
    expect(again.exitCode, again.all).toBe(0);
    expect(again.stdout).toContain("made earlier");
    expect(again.stdout).toContain("Train the student: the same command without --data-only (reuses the dataset)");
    expect(again.stdout).toContain(`or slm finetune tiny-arith --lora \\\n    ${res.dataset.path}`);
    // The summary fits 80 columns: the (long) dataset path has a line of its own.
    const long = again.stdout.split("\n").filter((l) => l.length > 80 && l.trim() !== res.dataset.path);
    expect(long).toEqual([]);
  });

  it("Ctrl+C keeps the answers so far and registers nothing; the same command continues; other sampling is refused", async () => {
    const sb = sandbox();
    const prompts = promptsFile("all.txt", questions);
    const args = [...teacher, "--prompts", prompts, "--parallel", "2", "--json"];
    const child = slm(args, sb);
    const sent = interruptWhen(child, /"id":"distill:generate","unit":"examples","current":([2-9]\d|1\d\d)\b/);
    const r = await child;
    expect(sent()).toBe(true);
    expect(r.exitCode, r.all).toBe(130);
    expect(lastJson(r.stdout).error).toMatchObject({ exitCode: 130, message: expect.stringMatching(/answers are kept in/), hint: expect.stringMatching(/same command again/) });
    const dir = path.join(sb.home, "datasets", "tiny-arith+distill");
    expect(existsSync(path.join(dir, "data.jsonl")) || existsSync(path.join(dir, "dataset.json"))).toBe(false);
    const kept = readFileSync(path.join(dir, "partial.jsonl"), "utf8").trim().split("\n").length;
    expect(kept).toBeGreaterThanOrEqual(20);
    expect(kept).toBeLessThan(questions.length);
    expect(registry(sb).models).toEqual({});

    const other = await slm([...args, "--temperature", "0.5"], sb);
    expect(other.exitCode, other.all).toBe(2);
    expect(lastJson(other.stdout).error!.message).toMatch(/was started with other sampling options/);

    const again = await slm(args, sb);
    expect(again.exitCode, again.all).toBe(0);
    const res = lastJson(again.stdout).data as { dataset: { path: string }; generation: { answered: number; resumed: number } };
    expect(res.generation.resumed).toBeGreaterThanOrEqual(kept);
    expect(res.generation.answered + res.generation.resumed).toBe(questions.length);
    const recs = records(res.dataset.path);
    expect(recs.map((x) => x.messages[0]!.content)).toEqual(questions);
    expect(recs.filter((x, i) => x.messages[1]!.content === difference(questions[i]!)).length / questions.length).toBeGreaterThanOrEqual(0.95);
    expect(readdirSync(dir).sort()).toEqual(["data.jsonl", "dataset.json"]);
  });

  it("--relabel replaces a dataset's answers with the teacher's", async () => {
    const sb = sandbox();
    const wrong = path.join(tmp, "wrong.jsonl");
    writeFileSync(wrong, questions.slice(0, 8).map((q) => JSON.stringify({ messages: [{ role: "user", content: q }, { role: "assistant", content: "0" }] })).join("\n") + "\n");
    const r = await slm([...teacher, "--prompts", wrong, "--relabel", "--out", "relabelled", "--json"], sb);
    expect(r.exitCode, r.all).toBe(0);
    const recs = records(path.join(sb.home, "datasets", "tiny-arith+relabelled", "data.jsonl"));
    const right = recs.filter((x, i) => x.messages[1]!.content === difference(questions[i]!)).length;
    expect(recs.map((x) => x.messages[0]!.content)).toEqual(questions.slice(0, 8));
    expect(right).toBeGreaterThanOrEqual(7); // the teacher's 99 %, not the file's zeros
  });
});

describe("slm distill: bad input, refused before anything runs", () => {
  const prompts = promptsFile("few.txt", questions.slice(0, 4));

  it("--help shows its examples as written: no line re-wrapped for being over 80 columns", async () => {
    const r = await slm(["distill", "--help"], sandbox());
    expect(r.exitCode, r.all).toBe(0);
    const examples = r.stdout.slice(r.stdout.indexOf("Examples:"));
    expect(examples).toContain("  slm distill --teacher tiny-arith \\\n    --teacher-lora test/fixtures/tiny-arith/lora-sub \\\n    --student test/fixtures/tiny-arith/hf --prompts questions.txt\n");
    expect(examples).toContain("  slm distill --teacher qwen2.5-3b --student qwen2.5-0.5b \\\n    --prompts chats.jsonl --relabel --kd-logprobs 8 --out chats\n");
  });

  it("a GGUF student: needs Hugging Face weights, and says how", async () => {
    const sb = sandbox();
    const r = await slm(["--json", "distill", "--teacher", "tiny-arith", "--student", path.join(FIXTURE, "gguf", "tiny-arith-f32.gguf"), "--prompts", prompts], sb);
    expect(r.exitCode, r.all).toBe(2);
    const e = lastJson(r.stdout).error!;
    expect(e.message).toMatch(/is a GGUF file; fine-tuning needs the model's Hugging Face weights/);
    expect(e.hint).toMatch(/HF model folder/);
    expect(existsSync(path.join(sb.home, "datasets"))).toBe(false);
  });

  it("--kd-logprobs with a teacher of another tokenizer: use sequence-level KD", async () => {
    const sb = sandbox();
    const other = path.join(tmp, "other-vocab.gguf");
    writeLlamaGguf(other, { name: "other", vocab: 320, hidden: 64, layers: 1, heads: 4, kvHeads: 4, ffn: 128, context: 256, tied: true });
    const r = await slm(["--json", "distill", "--teacher", other, "--student", "tiny-arith", "--prompts", prompts, "--kd-logprobs", "4"], sb);
    expect(r.exitCode, r.all).toBe(2);
    const e = lastJson(r.stdout).error!;
    expect(e.message).toMatch(/--kd-logprobs needs a teacher and a student with the same tokenizer: token 3 is ".*" for the teacher and "<\|user\|>" for the student/);
    expect(e.hint).toMatch(/sequence-level KD \(drop --kd-logprobs\)/);
    expect(existsSync(path.join(sb.home, "datasets"))).toBe(false);
  });

  it("answered examples without --relabel, --kd-alpha without --kd-logprobs, --full with LoRA options", async () => {
    const sb = sandbox();
    const r = await slm(["distill", "--teacher", "tiny-arith", "--student", "tiny-arith", "--prompts", path.join(FIXTURE, "data", "sub-eval.jsonl")], sb);
    expect(r.exitCode, r.all).toBe(2);
    expect(r.stderr).toMatch(/sub-eval\.jsonl line 1: the conversation ends with the assistant's answer/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    const a = await slm(["distill", "--teacher", "tiny-arith", "--student", "tiny-arith", "--prompts", prompts, "--kd-alpha", "0.5"], sb);
    expect(a.exitCode, a.all).toBe(2);
    expect(a.stderr).toMatch(/--kd-alpha .* needs --kd-logprobs/);
    // The student's fine-tune options too, before the teacher answers anything.
    const full = await slm(["distill", "--teacher", "tiny-arith", "--student", "tiny-arith", "--prompts", prompts, "--full", "--rank", "8"], sb);
    expect(full.exitCode, full.all).toBe(2);
    expect(full.stderr).toMatch(/--rank sets the LoRA adapter, which --full does not train/);
    const txt = await slm(["distill", "--teacher", "tiny-arith", "--student", "tiny-arith", "--prompts", prompts, "--relabel"], sb);
    expect(txt.exitCode, txt.all).toBe(2);
    expect(txt.stderr).toContain("--relabel replaces the answers of a dataset, and few.txt holds prompts only");
    // --data-only trains nothing: the student's training options would be silently dropped.
    const dataOnly = await slm(["distill", "--teacher", "tiny-arith", "--student", "tiny-arith", "--prompts", prompts, "--data-only", "--max-steps", "5", "--full"], sb);
    expect(dataOnly.exitCode, dataOnly.all).toBe(2);
    expect(dataOnly.stderr).toContain("--data-only trains no student: --full, --max-steps would do nothing");
    expect(existsSync(path.join(sb.home, "datasets"))).toBe(false);
  });
});
