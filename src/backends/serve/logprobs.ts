import type { PromptTokenLogprob, TokenAlternative, TokenLogprob } from "../runtime/tokenLogprobs.js";
import type { GenerationSlot, RuntimeModel } from "../runtime/types.js";
import { HttpError } from "./httpError.js";

/**
 * Log-probabilities in OpenAI's two shapes: chat's `logprobs.content[]` and the legacy completions'
 * parallel lists (`tokens`, `token_logprobs`, `top_logprobs`, `text_offset`), plus `echo`'s prompt part.
 */

/** Refuses logprobs or echo's log-probabilities on a runtime that cannot read them (before anything is generated). */
export function requireLogprobs(slot: GenerationSlot, id: string): void {
  if (typeof slot.promptLogprobs !== "function") {
    throw new HttpError(400, `${id} cannot report log-probabilities: its runtime does not read them.`, { param: "logprobs", code: "logprobs_unsupported" });
  }
}

function chatAlternative(t: TokenAlternative) {
  return { token: t.text, logprob: t.logprob, bytes: t.bytes ?? [...Buffer.from(t.text, "utf8")] };
}

/** Chat's `choices[i].logprobs` for some tokens of the answer (all of them, or a stream chunk's). */
export function chatLogprobs(tokens: readonly TokenLogprob[]) {
  // Chat lists the tokens of the message only (OpenAI's does not show the end token).
  return { content: tokens.filter((t) => !t.end).map((t) => ({ ...chatAlternative(t), top_logprobs: t.top.map(chatAlternative) })), refusal: null };
}

export interface LegacyLogprobs {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[];
  text_offset: number[];
}

/** {text: logprob}, most likely first; of alternatives with the same text, the likeliest. */
function topDict(top: readonly TokenAlternative[]): Record<string, number> {
  const dict: Record<string, number> = {};
  for (const a of top) if (!Object.hasOwn(dict, a.text)) dict[a.text] = a.logprob;
  return dict;
}

/**
 * The legacy shape for some tokens (the echoed prompt's, then the answer's), `offset` being where the
 * first one's text starts in the choice's text. Alternatives with the same text keep the likeliest.
 */
export function legacyLogprobs(tokens: readonly (TokenLogprob | PromptTokenLogprob)[], offset: number): LegacyLogprobs {
  const out: LegacyLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  let at = offset;
  for (const t of tokens) {
    out.tokens.push(t.text);
    out.token_logprobs.push(t.logprob);
    out.top_logprobs.push(t.top === null ? null : topDict(t.top));
    out.text_offset.push(at);
    at += t.text.length;
  }
  return out;
}

/** What `echo` puts before a completion: the prompt's text, and with logprobs its tokens'. */
export interface Echo {
  text: string;
  tokens?: PromptTokenLogprob[];
}

/**
 * The prompt as the request gave it: a string as it is; token ids as their text, control tokens written
 * out. Its log-probabilities are those of the request's own tokens: a BOS that slm put in front (`evaluated`
 * is one longer than the request's tokens) is evaluated but not echoed, and the first echoed token's is
 * null, as OpenAI's — a client counts positions in the tokens it sent (lm-evaluation-harness slices
 * `token_logprobs[ctxlen:-1]`).
 */
export async function echoOf(model: RuntimeModel, slot: GenerationSlot, prompt: string | number[], evaluated: readonly number[], top: number | undefined, signal: AbortSignal): Promise<Echo> {
  const own = typeof prompt === "string" ? model.tokenize(prompt, { special: true }) : prompt;
  const text = typeof prompt === "string" ? prompt : model.detokenize(own, { special: true });
  if (top === undefined) return { text };
  const all = await slot.promptLogprobs!(evaluated, top, signal);
  const tokens = all.slice(all.length - own.length);
  if (tokens[0]) tokens[0] = { ...tokens[0], logprob: null, top: null };
  return { text, tokens };
}
