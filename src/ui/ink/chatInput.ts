/**
 * The chat input line as plain data and one pure function, so the key handling can be reasoned about
 * (and tested) without a terminal. ChatView feeds it Ink's key events.
 */
export interface LineState {
  value: string;
  /** Index in `value` the next character goes before. */
  cursor: number;
  /** Lines sent earlier, oldest first. */
  history: string[];
  /** Which history line is shown; history.length means the line being written. */
  index: number;
  /** The unsent line, kept while ↑/↓ browse the history. */
  draft: string;
}

/** The subset of Ink's `Key` the editor looks at (so tests need not build a whole Key). */
export interface EditKey {
  upArrow?: boolean;
  downArrow?: boolean;
  leftArrow?: boolean;
  rightArrow?: boolean;
  home?: boolean;
  end?: boolean;
  backspace?: boolean;
  delete?: boolean;
  ctrl?: boolean;
  meta?: boolean;
  tab?: boolean;
  escape?: boolean;
}

export const emptyLine = (history: string[] = []): LineState => ({ value: "", cursor: 0, history, index: history.length, draft: "" });

const set = (s: LineState, value: string, cursor: number): LineState => ({ ...s, value, cursor: Math.max(0, Math.min(value.length, cursor)) });

/** After Enter: the line joins the history (not twice in a row, not when blank) and the input empties. */
export function submitLine(s: LineState): LineState {
  const line = s.value;
  const history = line.trim() && s.history[s.history.length - 1] !== line ? [...s.history, line] : s.history;
  return emptyLine(history);
}

export function editLine(s: LineState, input: string, key: EditKey): LineState {
  if (key.upArrow) {
    if (s.index === 0) return s;
    const index = s.index - 1;
    const value = s.history[index]!;
    return { ...s, index, value, cursor: value.length, draft: s.index === s.history.length ? s.value : s.draft };
  }
  if (key.downArrow) {
    if (s.index >= s.history.length) return s;
    const index = s.index + 1;
    const value = index === s.history.length ? s.draft : s.history[index]!;
    return { ...s, index, value, cursor: value.length };
  }
  if (key.leftArrow) return set(s, s.value, s.cursor - 1);
  if (key.rightArrow) return set(s, s.value, s.cursor + 1);
  if (key.home || (key.ctrl && input === "a")) return set(s, s.value, 0);
  if (key.end || (key.ctrl && input === "e")) return set(s, s.value, s.value.length);
  // Most terminals send DEL (0x7f) for Backspace, which Ink reports as `delete`; treat both as
  // deleting backwards, as a line editor is expected to.
  if (key.backspace || key.delete || (key.ctrl && input === "h")) {
    if (s.cursor === 0) return s;
    return set(s, s.value.slice(0, s.cursor - 1) + s.value.slice(s.cursor), s.cursor - 1);
  }
  if (key.ctrl && input === "u") return set(s, s.value.slice(s.cursor), 0);
  if (key.ctrl && input === "k") return set(s, s.value.slice(0, s.cursor), s.cursor);
  if (key.ctrl && input === "w") {
    const before = s.value.slice(0, s.cursor).replace(/\S*\s*$/, "");
    return set(s, before + s.value.slice(s.cursor), before.length);
  }
  if (key.ctrl || key.meta || key.tab || key.escape || !input) return s;
  // A paste arrives as one chunk; its line breaks become spaces because Enter sends the line.
  const text = input.replace(/\r\n|\r|\n/g, " ").replace(/[\u0000-\u001f\u007f]/g, "");
  if (!text) return s;
  return set(s, s.value.slice(0, s.cursor) + text + s.value.slice(s.cursor), s.cursor + text.length);
}
