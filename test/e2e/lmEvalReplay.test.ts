import { readFileSync } from "node:fs";
import path from "node:path";
import { execa, type ResultPromise } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BIN, FIXTURE, ROOT, lastJson, sandbox, slm } from "../helpers/cli.js";
import { listening } from "../helpers/serveProcess.js";

/**
 * lm-evaluation-harness 0.4.13's `local-completions` model with its remote tokenizer, run against `slm
 * serve tiny-arith` on the fixture's 200 add-choice questions: every HTTP request it sent, recorded
 * (test/fixtures/lm-eval/README.md says how), is sent again here, and its answers are read the way
 * lm-eval reads them (models/openai_completions.py parse_logprobs: `token_logprobs[ctxlen:-1]` summed,
 * greedy when each token is its position's top one). The accuracy that gives must be `slm eval`'s on
 * the same questions, and each choice's log-likelihood slm eval's — and what lm-eval itself reported.
 */

const DIR = path.join(ROOT, "test", "fixtures", "lm-eval");

interface Recorded {
  method: "GET" | "POST";
  path: string;
  body: Record<string, unknown> | null;
  response?: unknown;
}
interface Sample {
  doc_id: number;
  context: string;
  choices: string[];
  answer: number;
  loglikelihoods: number[];
  is_greedy: boolean[];
  acc: number;
  acc_norm: number;
}
interface Choice {
  index: number;
  text: string;
  logprobs: { tokens: string[]; token_logprobs: (number | null)[]; top_logprobs: (Record<string, number> | null)[]; text_offset: number[] };
}

const lines = <T>(file: string): T[] =>
  readFileSync(path.join(DIR, file), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as T);

const argmax = (xs: number[]) => xs.reduce((best, x, i) => (x > xs[best]! ? i : best), 0);

describe("lm-evaluation-harness's requests, replayed", () => {
  const sb = sandbox();
  let proc: ResultPromise<{ reject: false }>;
  let url: string;

  beforeAll(async () => {
    proc = execa("node", [BIN, "serve", "tiny-arith", "--port", "0", "--threads", "1"], { env: sb.env, extendEnv: true, reject: false });
    url = (await listening(proc, 60_000)).url;
  }, 90_000);

  afterAll(async () => {
    proc?.kill("SIGINT");
    await proc;
  });

  it("answer with the prompt's token log-probabilities; the multiple-choice accuracy read from them is slm eval's", async () => {
    const tokenized = new Map<string, number[]>();
    const answers = new Map<string, Choice>();
    let batches = 0;
    for (const r of lines<Recorded>("requests.jsonl")) {
      const res = await fetch(`${url}${r.path}`, { method: r.method, headers: { "Content-Type": "application/json" }, body: r.body ? JSON.stringify(r.body) : undefined });
      expect(res.status, `${r.method} ${r.path}`).toBe(200);
      const json = (await res.json()) as Record<string, unknown>;
      if (r.path === "/tokenizer_info") {
        // lm-eval's probe needs eos_token; its eos/bos ids come from tokenizing these strings.
        expect(json).toMatchObject({ eos_token: "</s>", bos_token: "<s>" });
      } else if (r.path === "/tokenize") {
        expect(json.tokens).toEqual((r.response as { tokens: number[] }).tokens);
        tokenized.set(r.body!.prompt as string, json.tokens as number[]);
      } else {
        expect(r.body).toMatchObject({ echo: true, logprobs: 1, max_tokens: 1 });
        const prompts = r.body!.prompt as number[][];
        const choices = json.choices as Choice[];
        expect(choices.map((c) => c.index).sort((a, b) => a - b)).toEqual(prompts.map((_, i) => i));
        for (const c of choices) {
          const prompt = prompts[c.index]!;
          const lp = c.logprobs;
          // The prompt's tokens as sent, then the one generated token.
          expect(lp.token_logprobs).toHaveLength(prompt.length + 1);
          expect(lp.tokens).toHaveLength(prompt.length + 1);
          expect(lp.token_logprobs[0]).toBeNull();
          lp.top_logprobs.slice(1).forEach((top) => expect(Object.keys(top!)).toHaveLength(1));
          answers.set(JSON.stringify(prompt), c);
        }
        batches++;
      }
    }
    expect(batches).toBe(200);

    // lm-eval's loglikelihood: context and context+continuation tokenized by the server, ctxlen the context's length.
    const samples = lines<Sample>("samples.jsonl");
    const picks: { acc: number; accNorm: number; lls: number[] }[] = [];
    for (const s of samples) {
      const ctx = tokenized.get(s.context)!;
      const lls = s.choices.map((choice, i) => {
        const whole = tokenized.get(s.context + choice)!;
        const c = answers.get(JSON.stringify(whole))!;
        const logprobs = c.logprobs.token_logprobs.slice(ctx.length, -1) as number[];
        const greedy = logprobs.every((x, k) => x === Math.max(...Object.values(c.logprobs.top_logprobs[ctx.length + k]!)));
        const ll = logprobs.reduce((a, b) => a + b, 0);
        // What lm-eval computed from the same answers when it ran.
        expect(ll).toBeCloseTo(s.loglikelihoods[i]!, 4);
        expect(greedy).toBe(s.is_greedy[i]);
        return ll;
      });
      picks.push({ acc: argmax(lls), accNorm: argmax(lls.map((ll, i) => ll / s.choices[i]!.length)), lls });
    }
    const acc = picks.filter((p, i) => p.acc === samples[i]!.answer).length / samples.length;
    const accNorm = picks.filter((p, i) => p.accNorm === samples[i]!.answer).length / samples.length;
    const reported = (JSON.parse(readFileSync(path.join(DIR, "results.json"), "utf8")) as { results: { tiny_add_choice: Record<string, number> } }).results.tiny_add_choice;
    expect(acc).toBe(reported["acc,none"]);
    expect(accNorm).toBe(reported["acc_norm,none"]);

    const r = await slm(["eval", "tiny-arith", "--task", path.join(FIXTURE, "data", "add-choice.jsonl"), "--threads", "1", "--json"], sb);
    expect(r.exitCode, r.all).toBe(0);
    const score = (lastJson(r.stdout).data as { models: { tasks: { score: { acc: { value: number }; accNorm: { value: number }; samples: { logLikelihoods: number[] }[] } }[] }[] }).models[0]!.tasks[0]!.score;
    expect(acc).toBe(score.acc.value);
    expect(accNorm).toBe(score.accNorm.value);
    score.samples.forEach((x, q) => x.logLikelihoods.forEach((ll, i) => expect(Math.abs(ll - picks[q]!.lls[i]!)).toBeLessThan(1e-3)));
  }, 60_000);
});
