import type { ChatHistoryItem, ChatWrapper, LlamaModel, Token } from "node-llama-cpp";
import { UsageError } from "../../core/errors.js";

/**
 * The tokens a prompt becomes, exactly as the model evaluates them. run, chat and serve all count
 * prompt tokens here, so they agree with each other and with the Hugging Face tokenizer (a templated
 * prompt: `apply_chat_template(…, add_generation_prompt=True)`; a raw one: `tokenizer(text)`). The
 * sequence's token meter cannot give this count: it books the last prompt token as output (its logits
 * give the first answer token) and skips whatever a reused sequence already held.
 */

/** A raw prompt: text, or token ids as OpenAI's /v1/completions takes them. */
export type RawPrompt = string | readonly number[];

/** The BOS token node-llama-cpp puts in front of every completion, for models that want one. */
function leadingBos(model: LlamaModel): Token | undefined {
  return model.tokens.shouldPrependBosToken && model.tokens.bos !== null ? model.tokens.bos : undefined;
}

/**
 * A raw prompt's tokens, as llama.cpp's server makes them: BOS (when the model adds one), then the text
 * with its control tokens (`<|user|>`, `</s>`…) parsed as such, so a prompt written in the model's chat
 * format means what it says. Token ids are taken as given; only BOS is put in front when they do not
 * start with it, because node-llama-cpp starts every completion with it (llama-server would not).
 * `special` false reads control-token text as plain text.
 */
export function rawPromptTokens(model: LlamaModel, prompt: RawPrompt, vocabSize?: number, special = true): Token[] {
  const bos = leadingBos(model);
  if (typeof prompt === "string") {
    const body = model.tokenize(prompt, special, bos !== undefined ? "trimLeadingSpace" : undefined);
    return bos === undefined ? body : [bos, ...body];
  }
  const limit = vocabSize ?? Number.MAX_SAFE_INTEGER;
  prompt.forEach((t, i) => {
    // An id outside the vocabulary would reach llama.cpp's embedding lookup unchecked.
    if (!Number.isInteger(t) || t < 0 || t >= limit) throw new UsageError(`Token id ${t} at position ${i} is not in the model's vocabulary (0–${limit - 1}).`);
  });
  const ids = prompt as readonly Token[];
  return bos === undefined || ids[0] === bos ? [...ids] : [bos, ...ids];
}

/** What LlamaCompletion is given for `tokens` from rawPromptTokens: it adds the leading BOS itself. */
export function completionInput(model: LlamaModel, tokens: readonly Token[]): Token[] {
  const bos = leadingBos(model);
  return bos !== undefined && tokens[0] === bos ? tokens.slice(1) : [...tokens];
}

/**
 * A templated prompt's tokens: the conversation so far (a chat session's history, system message
 * included), the user's message, and the start of the assistant's reply.
 */
export function chatPromptTokens(model: LlamaModel, wrapper: ChatWrapper, history: readonly ChatHistoryItem[], prompt: string): Token[] {
  const { contextText } = wrapper.generateContextState({ chatHistory: [...history, { type: "user", text: prompt }, { type: "model", response: [] }] });
  return contextText.tokenize(model.tokenizer);
}

/** BOS for models that add one (what llama-perplexity's common_tokenize(…, add_special = true) adds). */
export function bosOf(model: LlamaModel): number | undefined {
  return leadingBos(model);
}

/**
 * A text to score, tokenised like llama-perplexity: special-token text (e.g. "<|user|>") is not parsed
 * into control tokens (parse_special = false), and BOS goes in front when the model adds it.
 */
export function tokenizeText(model: LlamaModel, text: string): Uint32Array {
  const body = model.tokenize(text, false);
  const bos = bosOf(model);
  const out = new Uint32Array(body.length + (bos === undefined ? 0 : 1));
  let k = 0;
  if (bos !== undefined) out[k++] = bos;
  for (const t of body) out[k++] = t as number;
  return out;
}
