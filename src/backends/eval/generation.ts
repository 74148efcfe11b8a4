import type { BackendContext } from "../../core/events.js";
import { type SamplingOptions, samplingFor } from "../llama/generate.js";
import type { LoadedModel } from "../llama/loader.js";
import { toChatHistory } from "../quantize/calibration.js";
import { SequenceAnswerer } from "./answer.js";
import { forEachOnSequences } from "./parallel.js";
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
 * Answers every question of a generation task on the model's parallel sequences (one answerer per
 * sequence, kept for all the questions it answers, with the model's chat wrapper resolved once) and
 * scores the answers. Sampling is greedy unless a temperature is given; with a temperature, question i
 * is sampled with seed + i, so an answer does not depend on which sequence happened to take it.
 */
/** `progressId` is the step whose progress events this emits. */
export async function scoreGeneration(loaded: LoadedModel, task: Task & { kind: "generate" }, o: GenerationOptions, progressId: string, ctx: BackendContext): Promise<GenerationScore> {
  const chatWrapper = await loaded.chatWrapper();
  const sampling = samplingFor({ ...o, temperature: o.temperature ?? 0, maxTokens: o.maxTokens ?? EVAL_MAX_TOKENS }, loaded.context.contextSize);
  const baseSeed = o.seed ?? 0;
  const started = performance.now();
  let generatedTokens = 0;
  const samples = await forEachOnSequences(
    loaded,
    task.items,
    (sequence) => new SequenceAnswerer(loaded, sequence, chatWrapper, sampling, ctx.signal),
    async (answerer: SequenceAnswerer, item: GenerationItem, i): Promise<GenerationSample> => {
      const r = await answerer.answer(toChatHistory(item.messages), baseSeed + i, `${task.name} line ${item.line}`);
      generatedTokens += r.tokens;
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
