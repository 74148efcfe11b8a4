import { Tokenizer } from "@huggingface/tokenizers";

/** tokenizer.json's added token entry (the fields slm reads). */
interface AddedTokenJson {
  id: number;
  content: string;
  special?: boolean;
}

export interface TokenizerFiles {
  /** tokenizer.json, parsed. */
  tokenizer: Record<string, unknown>;
  /** tokenizer_config.json, parsed ({} when absent). */
  config: Record<string, unknown>;
}

/**
 * A Hugging Face fast tokenizer (tokenizer.json) through tokenizers.js, with the two readings llama.cpp
 * gives text: special-token text parsed into control tokens (prompts, templates), or taken literally
 * (llama-perplexity's parse_special = false, and `tokenize` by default, like node-llama-cpp's).
 */
export class OnnxTokenizer {
  private readonly withSpecial: Tokenizer;
  private literalTokenizer: Tokenizer | undefined;
  readonly specialIds: ReadonlySet<number>;
  /** The tokens the post-processor puts in front of a text (BOS for Llama-style tokenizers). */
  readonly leading: readonly number[];
  readonly bos: number | undefined;
  /** The newline token, which the repeat penalty spares (as node-llama-cpp does); undefined if "\n" is not one token. */
  readonly newline: number | undefined;

  constructor(private readonly files: TokenizerFiles) {
    this.withSpecial = new Tokenizer(files.tokenizer, files.config);
    const added = (files.tokenizer.added_tokens ?? []) as AddedTokenJson[];
    this.specialIds = new Set(added.filter((t) => t.special).map((t) => t.id));
    const plain: number[] = this.withSpecial.encode("a", { add_special_tokens: false }).ids;
    const full: number[] = this.withSpecial.encode("a", { add_special_tokens: true }).ids;
    const at = full.findIndex((_, i) => plain.every((t, j) => full[i + j] === t));
    this.leading = at > 0 ? full.slice(0, at) : [];
    const bosText = tokenText(files.config.bos_token);
    const bosId = bosText !== undefined ? this.withSpecial.token_to_id(bosText) : undefined;
    this.bos = bosId !== undefined && this.leading.includes(bosId) ? bosId : undefined;
    const nl = this.withSpecial.encode("\n", { add_special_tokens: false }).ids;
    this.newline = nl.length === 1 ? nl[0] : undefined;
  }

  /** Text to tokens, nothing added in front; `special`: parse special-token text into those tokens. */
  encode(text: string, special = false): number[] {
    if (text.length === 0) return [];
    return (special ? this.withSpecial : this.literal()).encode(text, { add_special_tokens: false }).ids;
  }

  /** Text as `tokenizer(text)` in transformers gives it: the post-processor's tokens (BOS) in front. */
  encodeWithLeading(text: string, special = true): number[] {
    return [...this.leading, ...this.encode(text, special)];
  }

  /** Tokens to text; special tokens leave no text unless `keepSpecial` (node-llama-cpp's detokenize). */
  decode(ids: readonly number[], keepSpecial = false): string {
    // Models often have more rows of logits than the tokenizer has tokens (a vocabulary padded to a round
    // size); such ids have no text, and tokenizers.js would fail on them.
    const known = ids.filter((id) => this.withSpecial.id_to_token(id) !== undefined);
    if (known.length === 0) return "";
    return this.withSpecial.decode(known, { skip_special_tokens: !keepSpecial });
  }

  /** The token string of an id (`<s>`, `▁the`), or undefined outside the vocabulary. */
  tokenString(id: number): string | undefined {
    return this.withSpecial.id_to_token(id);
  }

  idOf(token: string): number | undefined {
    return this.withSpecial.token_to_id(token);
  }

  /** A second tokenizer without the special added tokens, so their text is tokenized as plain text. */
  private literal(): Tokenizer {
    if (!this.literalTokenizer) {
      const added = (this.files.tokenizer.added_tokens ?? []) as AddedTokenJson[];
      this.literalTokenizer = new Tokenizer({ ...this.files.tokenizer, added_tokens: added.filter((t) => !t.special) }, this.files.config);
    }
    return this.literalTokenizer;
  }
}

/** A special token as tokenizer_config.json writes it: a string, or an AddedToken object with `content`. */
export function tokenText(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (value && typeof value === "object" && typeof (value as { content?: unknown }).content === "string") return (value as { content: string }).content;
  return undefined;
}
