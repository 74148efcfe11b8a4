import { readFileSync, statSync } from "node:fs";
import { NotFoundError, UsageError } from "../../core/errors.js";

/**
 * How llama-perplexity cuts a text into chunks (tools/perplexity/perplexity.cpp, `perplexity()` and
 * `kl_divergence()`): the whole text is tokenised once, with BOS in front when the model adds one;
 * it is cut into floor(n / ctx) chunks of `ctx` tokens (the tail is dropped); the first token of each
 * chunk is replaced by BOS (when the model adds one); each chunk starts on an empty KV cache; only the
 * second half is scored: the logits at positions ctx/2 … ctx−2 predict tokens ctx/2+1 … ctx−1.
 *
 * Batching: like llama-perplexity, batch / ctx chunks are decoded together, one sequence each, so
 * small chunks still fill a 512-token decode. Each chunk is decoded whole whenever ctx ≤ 512, and in
 * 512-token pieces beyond. The figures then equal llama-perplexity's exactly (measured to 9
 * significant digits on the fixture) when it too decodes each chunk whole (`-b 512`, or `-ub` equal to
 * `-b`). With its defaults (-b 2048, -ub 512) llama.cpp splits every chunk across several physical
 * batches when 2048 / ctx sequences share one, and the arithmetic changes slightly: 0.16 % of the
 * fixture Q8_0's perplexity at ctx 128.
 */
export interface ChunkPlan {
  ctx: number;
  chunks: number;
  /** First position whose logits are scored (ctx/2, rounded down). */
  first: number;
  /** Tokens scored per chunk: ctx − 1 − first. */
  scoredPerChunk: number;
  /** Tokens of each chunk per llama_decode: ctx, or the batch size for longer chunks. */
  piece: number;
  /** Chunks decoded together, one sequence each. */
  parallel: number;
  /** Tokens of the whole text, BOS included. */
  tokens: number;
}

/** llama-perplexity's physical batch (n_ubatch): the tokens of one llama_decode. */
export const DEFAULT_EVAL_BATCH = 512;

export function checkContextSize(ctx: number, batch?: number): void {
  if (!Number.isInteger(ctx) || ctx < 4) throw new UsageError(`--ctx must be a whole number ≥ 4 for perplexity (got ${ctx}).`);
  if (batch !== undefined && (!Number.isInteger(batch) || batch < 1)) throw new UsageError(`--batch must be a positive whole number (got ${batch}).`);
}

/** Sequences and tokens per decode for chunks of `ctx` tokens: what the scoring context must hold. */
export function decodeShape(ctx: number, batch = DEFAULT_EVAL_BATCH): { parallel: number; piece: number; batchSize: number } {
  const parallel = ctx <= batch ? Math.floor(batch / ctx) : 1;
  const piece = Math.min(ctx, batch);
  return { parallel, piece, batchSize: parallel * piece };
}

export function planChunks(tokenCount: number, ctx: number, batch = DEFAULT_EVAL_BATCH): ChunkPlan {
  checkContextSize(ctx, batch);
  // llama-perplexity refuses fewer than two chunks' worth of tokens; so does slm, with the same figures.
  if (tokenCount < 2 * ctx) {
    throw new UsageError(`The text is too short for --ctx ${ctx}: it has ${tokenCount} tokens and needs at least ${2 * ctx} (two chunks).`, { hint: "Use a longer text or a smaller --ctx." });
  }
  const first = Math.floor(ctx / 2);
  const chunks = Math.floor(tokenCount / ctx);
  const { parallel, piece } = decodeShape(ctx, batch);
  return { ctx, chunks, first, scoredPerChunk: ctx - 1 - first, piece, parallel: Math.min(parallel, chunks), tokens: tokenCount };
}

/** The tokens of chunk `i`, its first one replaced by BOS when the model adds one. */
export function chunkTokens(all: Uint32Array, plan: ChunkPlan, i: number, bos: number | undefined): Uint32Array {
  const chunk = all.slice(i * plan.ctx, (i + 1) * plan.ctx);
  if (bos !== undefined) chunk[0] = bos;
  return chunk;
}

/**
 * The text as llama-perplexity's `-f` reads it: the whole file, one trailing newline removed, no
 * escape processing.
 */
export function readEvalText(file: string): string {
  let text: string;
  try {
    if (statSync(file).isDirectory()) throw new UsageError(`${file} is a folder; perplexity takes a text file.`);
    text = readFileSync(file, "utf8");
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new NotFoundError(`Text file not found: ${file}`);
  }
  if (text.endsWith("\n")) text = text.slice(0, -1);
  if (text.length === 0) throw new UsageError(`${file} is empty: there is no text to score.`);
  return text;
}
