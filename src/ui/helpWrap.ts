/**
 * Fits `--help` text to the terminal. commander wraps its option table to the width itself, but prints
 * the text added with addHelpText as written; that text holds prose and example command lines, which
 * are wrapped differently: prose at spaces, an example as a shell line continued with " \" so that it
 * can still be copied and pasted, its "# comment" moved to a line of its own above it (a comment cannot
 * be continued).
 */

const COMMAND = /^(\s+)(slm|curl|printf|echo|npx|python3?|lm_eval|docker) /;

/**
 * `text` with every line no wider than `width` where it can be broken (a single long word stays whole).
 * A run of prose lines that holds a line too wide is refilled as one paragraph, so that wrapping
 * does not leave a short line after every long one; runs that fit keep their line breaks.
 */
export function wrapHelp(text: string, width: number): string {
  const out: string[] = [];
  let prose: string[] = [];
  const flush = () => {
    if (prose.some((l) => l.length > width)) out.push(...wrapProse(prose.join(" "), width));
    else out.push(...prose);
    prose = [];
  };
  for (const line of text.split("\n")) {
    if (line.trim() !== "" && !/^\s/.test(line)) {
      prose.push(line);
      continue;
    }
    flush();
    out.push(line.length <= width ? line : COMMAND.test(line) ? wrapCommand(line, width).join("\n") : wrapProse(line, width).join("\n"));
  }
  flush();
  return out.join("\n");
}

function indentOf(line: string): string {
  return /^\s*/.exec(line)![0];
}

/** Words onto lines of at most `width`, the first starting with `first`, the others with `rest`. */
function fill(words: string[], width: number, first: string, rest: string, suffix = ""): string[] {
  const lines: string[] = [];
  let current = first;
  let empty = true;
  for (const w of words) {
    const candidate = empty ? current + w : `${current} ${w}`;
    if (!empty && candidate.length + suffix.length > width) {
      lines.push(current + suffix);
      current = rest + w;
    } else current = candidate;
    empty = false;
  }
  lines.push(current);
  return lines;
}

function wrapProse(line: string, width: number): string[] {
  const indent = indentOf(line);
  return fill(line.trim().split(/\s+/), width, indent, indent);
}

/** One shell command line continued with " \\" onto lines of at most `width` (a quoted argument kept whole). */
export function wrapCommand(line: string, width: number): string[] {
  const indent = indentOf(line);
  // A comment after the command: "#" preceded by two or more spaces (not a "#" inside an argument).
  const m = /^(.*?\S)\s{2,}#\s?(.*)$/.exec(line);
  const command = m ? m[1]! : line;
  const comment = m ? wrapProse(`${indent}# ${m[2]!}`, width) : [];
  if (command.length <= width) return [...comment, command];
  // Words of the shell line: a quoted argument is never broken (its spaces are part of it).
  const words = command.trim().match(/(?:[^\s'"]+|'[^']*'|"[^"]*")+/g) ?? [];
  return [...comment, ...fill(words, width, indent, `${indent}    `, " \\")];
}
