import type { LlamaChat } from "node-llama-cpp";
import { CancelledError } from "../../core/errors.js";
import type { BackendContext } from "../../core/events.js";
import { type SamplingOptions, samplingFor } from "../llama/generate.js";
import type { LoadedModel } from "../llama/loader.js";
import { toChatHistory } from "../quantize/calibration.js";
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
 * Answers every question of a generation task on the model's parallel sequences (one LlamaChat per
 * sequence, kept for all the questions it answers, with the model's chat wrapper resolved once) and
 * scores the answers. Sampling is greedy unless a temperature is given; with a temperature, question i
 * is sampled with seed + i, so an answer does not depend on which sequence happened to take it.
 */
export async function scoreGeneration(loaded: LoadedModel, task: Task & { kind: "generate" }, o: GenerationOptions, ctx: BackendContext): Promise<GenerationScore> {
  const { LlamaChat } = await import("node-llama-cpp");
  const chatWrapper = await loaded.chatWrapper();
  const sampling = samplingFor({ ...o, temperature: o.temperature ?? 0, maxTokens: o.maxTokens ?? EVAL_MAX_TOKENS }, loaded.context.contextSize);
  const baseSeed = o.seed ?? 0;
  const started = performance.now();
  let generatedTokens = 0;
  const samples = await forEachOnSequences(
    loaded,
    task.items,
    (sequence) => new LlamaChat({ contextSequence: sequence, chatWrapper }),
    async (chat: LlamaChat, item: GenerationItem, i): Promise<GenerationSample> => {
      const before = chat.sequence.tokenMeter.usedOutputTokens;
      let r: Awaited<ReturnType<LlamaChat["generateResponse"]>>;
      try {
        r = await chat.generateResponse(toChatHistory(item.messages), { ...sampling, seed: baseSeed + i, signal: ctx.signal });
      } catch (err) {
        if (ctx.signal?.aborted) throw new CancelledError();
        throw err;
      }
      generatedTokens += chat.sequence.tokenMeter.usedOutputTokens - before;
      return { line: item.line, output: r.response, correct: isCorrect(r.response, item.answers, item.match ?? o.match), stopReason: r.metadata.stopReason };
    },
    `task:${task.name}`,
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
