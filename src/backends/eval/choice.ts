import { UsageError } from "../../core/errors.js";
import type { BackendContext } from "../../core/events.js";
import type { RuntimeModel } from "../runtime/types.js";
import { forEachOnSlots } from "./parallel.js";
import { type Proportion, pickChoices, wilson } from "./match.js";
import type { ChoiceItem, Task } from "./tasks.js";

export interface ChoiceSample {
  line: number;
  /** Summed log-likelihood of each choice's tokens after the prompt. */
  logLikelihoods: number[];
  pick: number;
  pickNorm: number;
  answer: number;
}

export interface ChoiceScore {
  kind: "choice";
  acc: Proportion;
  accNorm: Proportion;
  questions: number;
  seconds: number;
  questionsPerSecond: number;
  samples: ChoiceSample[];
}

/**
 * Scores a multiple-choice task by log-likelihood, like lm-evaluation-harness: the summed
 * log-probability of each choice's tokens after the prompt; acc takes the most likely choice, acc_norm
 * the most likely per byte. The prompt is the question rendered with the model's chat template (as
 * generation sees it), ending where the assistant's reply begins; each choice is scored as the start of
 * that reply. Questions run on the parallel slots; each question's prompt is evaluated once and every
 * choice continues from it.
 */
export async function scoreChoices(model: RuntimeModel, task: Task & { kind: "choice" }, progressId: string, ctx: BackendContext): Promise<ChoiceScore> {
  await model.prepareLogprobs?.(ctx);
  const started = performance.now();
  const samples = await forEachOnSlots(
    model,
    task.items,
    async (slot, item: ChoiceItem): Promise<ChoiceSample> => {
      const prompt = await model.chatPrompt(item.messages);
      const choices = item.choices.map((c) => model.tokenize(c));
      const longest = prompt.length + Math.max(...choices.map((c) => c.length));
      if (longest > model.contextSize) {
        throw new UsageError(`${task.name} line ${item.line}: the question and its longest choice take ${longest} tokens, more than the context of ${model.contextSize}.`, { hint: "Give a larger --ctx." });
      }
      const logLikelihoods = await slot.logLikelihoods(prompt, choices, ctx.signal);
      const { acc, accNorm } = pickChoices(logLikelihoods, item.choices);
      return { line: item.line, logLikelihoods, pick: acc, pickNorm: accNorm, answer: item.answer };
    },
    progressId,
    ctx,
  );
  const seconds = (performance.now() - started) / 1000;
  return {
    kind: "choice",
    acc: wilson(samples.filter((s) => s.pick === s.answer).length, samples.length),
    accNorm: wilson(samples.filter((s) => s.pickNorm === s.answer).length, samples.length),
    questions: samples.length,
    seconds,
    questionsPerSecond: seconds > 0 ? samples.length / seconds : 0,
    samples,
  };
}
