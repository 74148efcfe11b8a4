import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { UsageError } from "../../core/errors.js";
import { withStep, type BackendContext } from "../../core/events.js";
import { prepareConvert } from "../convert/convert.js";
import { readGgufHeader } from "../gguf/reader.js";
import { runLlamaCppScript } from "../python/llamaScripts.js";
import type { FinetuneBase } from "../finetune/base.js";
import type { ModelEntry } from "../store/types.js";

/**
 * Token-level KD compares the teacher's distribution with the student's token by token, so both must
 * number the same tokens the same way. The check compares the GGUF vocabularies (`tokenizer.ggml.tokens`,
 * the strings in id order) as llama.cpp's converter writes them: the teacher's GGUF, and the student's
 * registered GGUF or, when it has none yet, a `--vocab-only` conversion of its HF folder (seconds).
 */

const SEQUENCE_LEVEL = "Use sequence-level KD (drop --kd-logprobs): the student then learns from the teacher's answers as text, which works across tokenizers.";

export function ggufTokens(file: string): string[] {
  const v = readGgufHeader(file, { arrayLimit: Number.MAX_SAFE_INTEGER }).metadata.get("tokenizer.ggml.tokens");
  if (typeof v !== "object" || v === null || !("values" in v) || !v.values) return [];
  return v.values.map(String);
}

async function studentTokens(student: FinetuneBase, ctx: BackendContext): Promise<string[]> {
  if (student.gguf?.format === "gguf") return ggufTokens(student.gguf.path);
  if (!student.hf) {
    throw new UsageError(`--kd-logprobs checks the student's tokenizer before generating, and ${student.from} is not downloaded yet.`, {
      hint: `Pull its weights first: slm pull ${student.pull} --format hf`,
    });
  }
  const hf = student.hf;
  return withStep(ctx, "distill:vocab", "Reading the student's tokenizer", async () => {
    const env = await prepareConvert(hf, ctx);
    const work = mkdtempSync(path.join(tmpdir(), "slm-vocab-"));
    try {
      const out = path.join(work, "vocab.gguf");
      await runLlamaCppScript(env.python.python, env, [hf, "--vocab-only", "--outfile", out], ctx);
      return ggufTokens(out);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
}

/** Where the two vocabularies first differ, in words. */
function firstDifference(t: string[], s: string[]): string {
  if (t.length !== s.length) return `the teacher has ${t.length} tokens, the student ${s.length}`;
  const i = t.findIndex((tok, k) => tok !== s[k]);
  return `token ${i} is ${JSON.stringify(t[i])} for the teacher and ${JSON.stringify(s[i])} for the student`;
}

/** Refuses --kd-logprobs unless the teacher (a GGUF) and the student share a tokenizer. */
export async function assertSharedTokenizer(teacher: ModelEntry, student: FinetuneBase, ctx: BackendContext): Promise<void> {
  if (teacher.format !== "gguf") {
    throw new UsageError(`--kd-logprobs needs a GGUF teacher (its vocabulary is checked against the student's); ${teacher.name} is ${teacher.format.toUpperCase()}.`, { hint: SEQUENCE_LEVEL });
  }
  const t = ggufTokens(teacher.path);
  const s = await studentTokens(student, ctx);
  if (t.length === 0 || s.length === 0) throw new UsageError("--kd-logprobs: the teacher's or the student's GGUF has no token list to compare.", { hint: SEQUENCE_LEVEL });
  if (t.length === s.length && t.every((tok, k) => tok === s[k])) return;
  throw new UsageError(`--kd-logprobs needs a teacher and a student with the same tokenizer: ${firstDifference(t, s)}.`, { hint: SEQUENCE_LEVEL });
}
