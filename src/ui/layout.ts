/**
 * Fits one line of a live view into the terminal's width. Ink redraws its live lines by erasing as many
 * rows as it drew; a line the terminal wraps takes more rows than that and leaves a stale copy behind on
 * every redraw. So a live line never wraps: its fields say what they are worth, and the line drops the
 * least useful ones and shortens its label until it fits.
 */
export interface LineField {
  key: string;
  text: string;
  /** Fields are dropped lowest first while the line is too wide; `Infinity` is never dropped. */
  priority: number;
  /** The narrowest this field may be drawn before lower fields are dropped (labels, bars); default: its full width. */
  min?: number;
  /** Draws the field in fewer columns; default: the text shortened in the middle with "…". */
  fit?: (width: number) => string;
}

export interface PlacedField {
  key: string;
  text: string;
}

/** Which fields to show and how wide, so that they, joined by `gap` spaces, take at most `width` columns. */
export function fitLine(fields: readonly LineField[], width: number, gap = 1): PlacedField[] {
  const kept = fields.filter((f) => f.text !== "");
  const natural = (f: LineField) => displayWidth(f.text);
  const floor = (f: LineField) => Math.min(natural(f), f.min ?? natural(f));
  const total = (fs: readonly LineField[], size: (f: LineField) => number) => fs.reduce((a, f) => a + size(f), 0) + gap * Math.max(0, fs.length - 1);
  while (total(kept, floor) > width) {
    const droppable = kept.filter((f) => Number.isFinite(f.priority));
    if (droppable.length === 0) break;
    const lowest = droppable.reduce((a, f) => (f.priority < a.priority ? f : a));
    kept.splice(kept.indexOf(lowest), 1);
  }
  // Every field at its floor; the columns left over go back to the shrunk fields, most useful first.
  const size = new Map(kept.map((f) => [f, floor(f)]));
  let spare = width - total(kept, floor);
  for (const f of [...kept].sort((a, b) => b.priority - a.priority)) {
    const more = Math.min(Math.max(0, spare), natural(f) - size.get(f)!);
    size.set(f, size.get(f)! + more);
    spare -= more;
  }
  // What cannot be dropped and still does not fit (a very narrow terminal) gives up its own columns.
  for (const f of [...kept].sort((a, b) => a.priority - b.priority)) {
    if (spare >= 0) break;
    const less = Math.min(-spare, size.get(f)! - 1);
    size.set(f, size.get(f)! - less);
    spare += less;
  }
  return kept.map((f) => {
    const w = size.get(f)!;
    return { key: f.key, text: w >= natural(f) ? f.text : (f.fit ?? ((n: number) => truncateMiddle(f.text, n)))(w) };
  });
}

/** The same, as one string. */
export function fitText(fields: readonly LineField[], width: number, gap = 1): string {
  return fitLine(fields, width, gap)
    .map((f) => f.text)
    .join(" ".repeat(gap));
}

// East Asian wide and fullwidth ranges (and emoji), which a terminal draws two columns wide.
const WIDE = /[\u1100-\u115f\u2e80-\u303e\u3041-\u33ff\u3400-\u4dbf\u4e00-\u9fff\ua000-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6\u{1f300}-\u{1f64f}\u{1f900}-\u{1f9ff}\u{20000}-\u{3fffd}]/u;
const ZERO = /[\p{M}\u200b-\u200f\ufe00-\ufe0f]/u;

/** Columns a string takes in a terminal (no escape sequences expected). */
export function displayWidth(s: string): number {
  let n = 0;
  for (const ch of s) n += ZERO.test(ch) ? 0 : WIDE.test(ch) ? 2 : 1;
  return n;
}

/** The first characters of `s` that fit in `width` columns. */
function head(s: string, width: number): string {
  let out = "";
  let n = 0;
  for (const ch of s) {
    const w = displayWidth(ch);
    if (n + w > width) break;
    out += ch;
    n += w;
  }
  return out;
}

const tail = (s: string, width: number) => Array.from(head(Array.from(s).reverse().join(""), width)).reverse().join("");

/** `s` in at most `width` columns, its middle replaced by "…" (a file name keeps its quant type and extension). */
export function truncateMiddle(s: string, width: number): string {
  if (displayWidth(s) <= width) return s;
  if (width <= 1) return head("…", width);
  const left = Math.ceil((width - 1) / 2);
  return `${head(s, left)}…${tail(s, width - 1 - left)}`;
}

/** `s` in at most `width` columns, its end replaced by "…". */
export function truncateEnd(s: string, width: number): string {
  if (displayWidth(s) <= width) return s;
  if (width <= 1) return head("…", width);
  return `${head(s, width - 1)}…`;
}
