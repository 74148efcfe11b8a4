import { readFileSync } from "node:fs";
import path from "node:path";
import { generate } from "../../src/backends/llama/generate.js";
import type { LoadedModel } from "../../src/backends/llama/loader.js";
import { FIXTURE } from "./cli.js";

interface Line {
  messages: { role: string; content: string }[];
}

/** The first `n` question/answer pairs of one of the fixture's data files. */
export function firstLines(file: string, n: number): { q: string; a: string }[] {
  return readFileSync(path.join(FIXTURE, "data", file), "utf8")
    .trim()
    .split("\n")
    .slice(0, n)
    .map((l) => JSON.parse(l) as Line)
    .map((l) => ({ q: l.messages.find((m) => m.role === "user")!.content, a: l.messages.find((m) => m.role === "assistant")!.content }));
}

/** Share of greedy answers (through the chat template) equal to the expected ones. */
export async function exactMatch(loaded: LoadedModel, items: { q: string; a: string }[]): Promise<number> {
  let ok = 0;
  for (const it of items) if ((await generate(loaded, { prompt: it.q, temperature: 0, maxTokens: 8 })).text.trim() === it.a) ok++;
  return ok / items.length;
}
