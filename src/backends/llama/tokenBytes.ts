import type { LlamaModel, Token } from "node-llama-cpp";

/**
 * A token's own bytes. Most tokens' text is whole UTF-8 characters; a byte token (SentencePiece's
 * `<0xC3>`, byte-level BPE's single bytes) is part of one, and its text alone shows as U+FFFD, so its
 * bytes are read from its vocabulary entry instead (what OpenAI's `bytes` is for, and llama-server's
 * `with_pieces` byte arrays).
 */

/** Byte-level BPE (GPT-2) writes each byte as a printable character: the bytes that are printable as themselves, the others from U+0100 on. */
const BPE_BYTE = (() => {
  const map = new Map<number, number>();
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    map.set(printable ? b : 256 + extra++, b);
  }
  return map;
})();

function vocabEntry(model: LlamaModel, token: number): string | undefined {
  const native = (model as unknown as { _model?: { getTokenString?: (t: number) => unknown } })._model;
  const s = native?.getTokenString?.(token);
  return typeof s === "string" ? s : undefined;
}

export function tokenBytes(model: LlamaModel, token: number, text = model.detokenize([token as Token], true)): number[] {
  if (!text.includes("\uFFFD")) return [...Buffer.from(text, "utf8")];
  const entry = vocabEntry(model, token);
  const hex = entry && /^<0x([0-9A-Fa-f]{2})>$/.exec(entry);
  if (hex) return [parseInt(hex[1]!, 16)];
  if (entry && [...entry].every((c) => BPE_BYTE.has(c.codePointAt(0)!))) return [...entry].map((c) => BPE_BYTE.get(c.codePointAt(0)!)!);
  return [...Buffer.from(text, "utf8")];
}
