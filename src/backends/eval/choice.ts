import type { LlamaContextSequence, Token } from "node-llama-cpp";
import { UsageError } from "../../core/errors.js";
import type { BackendContext } from "../../core/events.js";
import type { LoadedModel } from "../llama/loader.js";
import { toChatHistory } from "../quantize/calibration.js";
import { continuationLogLikelihoods } from "./likelihood.js";
import { forEachOnSequences } from "./parallel.js";
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
 * The prompt as the model sees it before it answers: the question rendered with the model's chat
 * template (the same wrapper generation uses), ending where the assistant's reply begins. Each choice
 * is then scored as the start of that reply.
 */
async function promptTokens(loaded: LoadedModel, item: ChoiceItem): Promise<Token[]> {
  const wrapper = await loaded.chatWrapper();
  const { contextText } = wrapper.generateContextState({ chatHistory: [...toChatHistory(item.messages), { type: "model", response: [] }] });
  return contextText.tokenize(loaded.model.tokenizer);
}

/**
 * Scores a multiple-choice task by log-likelihood, like lm-evaluation-harness: the summed
 * log-probability of each choice's tokens after the prompt; acc takes the most likely choice, acc_norm
 * the most likely per byte. Questions run on the parallel sequences; each question's prompt is
 * evaluated once and every choice continues from it.
 */
export async function scoreChoices(loaded: LoadedModel, task: Task & { kind: "choice" }, progressId: string, ctx: BackendContext): Promise<ChoiceScore> {
  const started = performance.now();
  const samples = await forEachOnSequences(
    loaded,
    task.items,
    (sequence) => sequence,
    async (sequence: LlamaContextSequence, item: ChoiceItem): Promise<ChoiceSample> => {
      const prompt = await promptTokens(loaded, item);
      const choices = item.choices.map((c) => loaded.model.tokenize(c, false));
      const longest = prompt.length + Math.max(...choices.map((c) => c.length));
      if (longest > loaded.context.contextSize) {
        throw new UsageError(`${task.name} line ${item.line}: the question and its longest choice take ${longest} tokens, more than the context of ${loaded.context.contextSize}.`, { hint: "Give a larger --ctx." });
      }
      const logLikelihoods = await continuationLogLikelihoods(sequence, prompt, choices, ctx.signal);
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
