import type { TokenLogprob } from "./tokenLogprobs.js";

/**
 * The log-probabilities of what one generation sampled, handed out by where each token's text starts in
 * the answer (the ONNX runtime's; node-llama-cpp says which tokens it released, llama/tokenLogprobs.ts). A runtime samples more than it returns (an end-of-generation token, text held back for a
 * stop string and then cut): a token belongs to the answer when its text starts inside it, so every
 * character of the answer has its token, in order, and a cut stop string's tokens are left out.
 */
export class AnswerTokens {
  private readonly sampled: TokenLogprob[] = [];
  /** Where each sampled token's text starts in the answer, filled in as needed. */
  private readonly starts: number[] = [];
  private handedOut = 0;

  constructor(
    /** The text of some tokens, as the runtime makes the answer's (control tokens left out). */
    private readonly decode: (tokens: number[]) => string,
    private readonly isEnd: (token: number) => boolean,
  ) {}

  push(token: TokenLogprob): void {
    this.sampled.push(token);
  }

  private startOf(i: number): number {
    // A text that ends inside a UTF-8 character shows it as U+FFFD; that character starts later.
    for (let k = this.starts.length; k <= i; k++) this.starts.push(k === 0 ? 0 : this.decode(this.sampled.slice(0, k).map((t) => t.token)).replace(/\uFFFD+$/, "").length);
    return this.starts[i]!;
  }

  /** The tokens not handed out yet whose text starts within the first `length` characters of the answer (streaming). */
  upTo(length: number): TokenLogprob[] {
    const out: TokenLogprob[] = [];
    while (this.handedOut < this.sampled.length && this.startOf(this.handedOut) < length) out.push(this.sampled[this.handedOut++]!);
    return out;
  }

  /** The tokens of the whole answer `text`, then the end-of-generation token it stopped on, if so. */
  finish(text: string, stopReason: string): TokenLogprob[] {
    let n = 0;
    while (n < this.sampled.length && this.startOf(n) < text.length) n++;
    const tokens = this.sampled.slice(0, n);
    const end = this.sampled[n];
    if (stopReason === "eogToken" && end && this.isEnd(end.token)) tokens.push({ ...end, end: true });
    return tokens;
  }

  /** Of the answer's `tokens`, those upTo has not handed out (the end token, when streaming). */
  notHandedOut(tokens: readonly TokenLogprob[]): TokenLogprob[] {
    return tokens.slice(this.handedOut);
  }
}
