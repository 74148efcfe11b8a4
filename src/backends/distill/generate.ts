import { CancelledError } from "../../core/errors.js";
import type { BackendContext } from "../../core/events.js";
import { forEachOnSlots } from "../eval/parallel.js";
import type { GenerateResult, SamplingOptions } from "../llama/generate.js";
import { ContextLengthError } from "../runtime/errors.js";
import type { TokenLogprob } from "../runtime/tokenLogprobs.js";
import type { RuntimeModel } from "../runtime/types.js";
import type { DistillRecord, TeacherTokens } from "./dataset.js";
import type { PromptItem } from "./prompts.js";

/** Most tokens per answer unless --max-tokens says otherwise: eval's default, enough for most answers. */
export const DISTILL_MAX_TOKENS = 256;

/** Contract 1's `teacher` field from the runtime's per-token log-probabilities (end-of-generation token included, last). */
export function teacherTokens(tokens: readonly TokenLogprob[]): TeacherTokens {
  return {
    tokens: tokens.map((t) => t.token),
    top_ids: tokens.map((t) => t.top.map((a) => a.token)),
    top_logprobs: tokens.map((t) => t.top.map((a) => a.logprob)),
  };
}

export function recordOf(item: PromptItem, r: GenerateResult, kd: boolean): DistillRecord {
  const teacher = kd && r.tokens ? { teacher: teacherTokens(r.tokens) } : {};
  if ("prompt" in item) return { prompt: item.prompt, completion: r.text, ...teacher };
  return { messages: [...item.messages, { role: "assistant", content: r.text }], ...teacher };
}

export interface GenerateAnswersOptions extends SamplingOptions {
  /** K of --kd-logprobs, or null. */
  kdLogprobs: number | null;
  /** Called with each finished answer as it comes (the dataset's partial file). */
  onAnswer(index: number, record: DistillRecord, tokens: number): void;
}

/**
 * Answers `items[i]` for every i in `pending` on the teacher's parallel slots (eval's forEachOnSlots:
 * concurrent sequences share each llama_decode). Greedy unless a temperature is given; with one,
 * prompt i is sampled with seed + i, so an answer does not depend on which slot took it or on whether
 * the run was resumed. An answer cut by Ctrl+C is not kept.
 */
export async function generateAnswers(model: RuntimeModel, items: readonly PromptItem[], pending: readonly number[], o: GenerateAnswersOptions, progressId: string, ctx: BackendContext): Promise<number> {
  const { kdLogprobs, onAnswer, seed, temperature, maxTokens, ...sampling } = o;
  let generated = 0;
  await forEachOnSlots(
    model,
    pending,
    async (slot, i) => {
      const item = items[i]!;
      const input = "prompt" in item ? { prompt: item.prompt } : { messages: item.messages };
      let r: GenerateResult;
      try {
        r = await slot.generate({ ...sampling, ...input, temperature: temperature ?? 0, maxTokens: maxTokens ?? DISTILL_MAX_TOKENS, seed: (seed ?? 0) + i, lean: true, signal: ctx.signal, ...(kdLogprobs !== null ? { logprobs: { top: kdLogprobs } } : {}) });
      } catch (err) {
        if (err instanceof ContextLengthError) throw new ContextLengthError(err.promptTokens, err.contextSize, `prompt ${i + 1}`);
        throw err;
      }
      if (r.stopReason === "abort" || ctx.signal?.aborted) throw new CancelledError();
      generated += r.completionTokens;
      onAnswer(i, recordOf(item, r, kdLogprobs !== null), r.completionTokens);
    },
    progressId,
    ctx,
  );
  return generated;
}
