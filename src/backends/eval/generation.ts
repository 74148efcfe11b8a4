import type { BackendContext } from "../../core/events.js";
import type { SamplingOptions } from "../llama/generate.js";
import { ContextLengthError } from "../runtime/errors.js";
import type { RuntimeModel } from "../runtime/types.js";
import { forEachOnSlots } from "./parallel.js";
import { type MatchMode, type Proportion, isCorrect, wilson } from "./match.js";
import type { GenerationItem, Task } from "./tasks.js";

/** Greedy answers of at most this many tokens unless --max-tokens says otherwise (lm-evaluation-harness's default). */
export const EVAL_MAX_TOKENS = 256;

export interface GenerationOptions extends SamplingOptions {
  match: MatchMode;
}

export interface GenerationSample {
  line: number;
  output: string;
  correct: boolean;
  stopReason: string;
}

export interface GenerationScore {
  kind: "generate";
  accuracy: Proportion;
  match: MatchMode;
  questions: number;
  generatedTokens: number;
  seconds: number;
  questionsPerSecond: number;
  samples: GenerationSample[];
}

/**
 * Answers every question of a generation task on the model's parallel slots (each slot answers question
 * after question, lean: the runtime may reuse what the slot holds of a shared prompt prefix) and scores
 * the answers. Sampling is greedy unless a temperature is given; with a temperature, question i
 * is sampled with seed + i, so an answer does not depend on which sequence happened to take it.
 */
/** `progressId` is the step whose progress events this emits. */
export async function scoreGeneration(model: RuntimeModel, task: Task & { kind: "generate" }, o: GenerationOptions, progressId: string, ctx: BackendContext): Promise<GenerationScore> {
  // Only the sampling options: `o` may carry the rest of eval's options too.
  const sampling = { topP: o.topP, topK: o.topK, minP: o.minP, repeatPenalty: o.repeatPenalty, stop: o.stop };
  const baseSeed = o.seed ?? 0;
  const started = performance.now();
  let generatedTokens = 0;
  const samples = await forEachOnSlots(
    model,
    task.items,
    async (slot, item: GenerationItem, i): Promise<GenerationSample> => {
      let r;
      try {
        r = await slot.generate({ ...sampling, messages: item.messages, temperature: o.temperature ?? 0, maxTokens: o.maxTokens ?? EVAL_MAX_TOKENS, seed: baseSeed + i, lean: true, signal: ctx.signal });
      } catch (err) {
        if (err instanceof ContextLengthError) throw new ContextLengthError(err.promptTokens, err.contextSize, `${task.name} line ${item.line}`);
        throw err;
      }
      generatedTokens += r.completionTokens;
      return { line: item.line, output: r.text, correct: isCorrect(r.text, item.answers, item.match ?? o.match), stopReason: r.stopReason };
    },
    progressId,
    ctx,
  );
  const seconds = (performance.now() - started) / 1000;
  const correct = samples.filter((s) => s.correct).length;
  return {
    kind: "generate",
    accuracy: wilson(correct, samples.length),
    match: o.match,
    questions: samples.length,
    generatedTokens,
    seconds,
    questionsPerSecond: seconds > 0 ? samples.length / seconds : 0,
    samples,
  };
}
