/**
 * A minimal terminal screen for tests of live views: it replays what a program wrote to a pseudo-
 * terminal the way a VT100-style terminal shows it (autowrap at the right margin, line feeds, carriage
 * returns, cursor up/down/left/right/column, erase line/screen, scrolling), so a test can look at the
 * screen a user is left with. Colours and other SGR sequences are ignored; so are modes (?25l …). A
 * resize is not reflowed: later output is laid out at the new width from the marker on.
 * Wide characters are counted as one column: the views under test draw ASCII, box and block characters.
 */
export interface Screen {
  /** Every line that scrolled off the top, then the visible rows (trailing spaces trimmed). */
  lines: string[];
  /** How many times a printed character wrapped onto the next row because the row was full. */
  wraps: number;
  /**
   * The visible rows each time the program ended a synchronized update (ESC [ ? 2026 l, which Ink sends
   * after every redraw): what the terminal showed, frame by frame.
   */
  frames: string[][];
  /** For each resize marker, the number of frames drawn before it. */
  resizes: number[];
}

export function replay(raw: string, startColumns: number, rows: number): Screen {
  let columns = startColumns;
  const scrolled: string[] = [];
  let screen: string[][] = Array.from({ length: rows }, () => []);
  let x = 0;
  let y = 0;
  let wraps = 0;
  const frames: string[][] = [];
  const resizes: number[] = [];
  // A VT100 defers the wrap until the next printable character after the last column is written.
  let pendingWrap = false;
  const lineFeed = () => {
    if (y === rows - 1) {
      scrolled.push(screen[0]!.join("").trimEnd());
      screen = [...screen.slice(1), []];
    } else y++;
  };
  const put = (ch: string) => {
    if (pendingWrap) {
      pendingWrap = false;
      wraps++;
      x = 0;
      lineFeed();
    }
    const row = screen[y]!;
    while (row.length < x) row.push(" ");
    row[x] = ch;
    if (x === columns - 1) pendingWrap = true;
    else x++;
  };
  const chars = Array.from(raw);
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i]!;
    if (c === "\x1b") {
      const next = chars[i + 1];
      if (next === "[") {
        let j = i + 2;
        let params = "";
        while (j < chars.length && /[0-9;?<>=]/.test(chars[j]!)) params += chars[j++];
        const final = chars[j];
        if (final === "l" && params === "?2026") frames.push(screen.map((r) => r.join("").trimEnd()));
        const n = Number.parseInt(params.replace(/^\?/, ""), 10);
        const count = Number.isFinite(n) && n > 0 ? n : 1;
        pendingWrap = false;
        switch (final) {
          case "A":
            y = Math.max(0, y - count);
            break;
          case "B":
            y = Math.min(rows - 1, y + count);
            break;
          case "C":
            x = Math.min(columns - 1, x + count);
            break;
          case "D":
            x = Math.max(0, x - count);
            break;
          case "G":
            x = Math.min(columns - 1, count - 1);
            break;
          case "H":
          case "f": {
            const [r, col] = params.split(";").map((p) => Number.parseInt(p, 10));
            y = Math.min(rows - 1, Math.max(0, (r || 1) - 1));
            x = Math.min(columns - 1, Math.max(0, (col || 1) - 1));
            break;
          }
          case "K":
            if (params === "2") screen[y] = [];
            else if (params === "1") screen[y] = screen[y]!.map((ch, k) => (k <= x ? " " : ch));
            else screen[y] = screen[y]!.slice(0, x);
            break;
          case "J":
            if (params === "2" || params === "3") screen = Array.from({ length: rows }, () => []);
            else if (params === "" || params === "0") {
              screen[y] = screen[y]!.slice(0, x);
              for (let r = y + 1; r < rows; r++) screen[r] = [];
            }
            break;
          default:
            break; // SGR colours, modes: no effect on what the screen holds
        }
        i = j;
      } else if (next === "]") {
        // OSC: up to BEL or ST. A test marks the moment it resized the terminal with "ESC ] slm-resize=N BEL".
        let j = i + 2;
        while (j < chars.length && chars[j] !== "\x07" && !(chars[j] === "\x1b" && chars[j + 1] === "\\")) j++;
        const resize = /^slm-resize=(\d+)$/.exec(chars.slice(i + 2, j).join(""));
        if (resize) {
          columns = Number(resize[1]);
          x = Math.min(x, columns - 1);
          resizes.push(frames.length);
        }
        i = chars[j] === "\x07" ? j : j + 1;
      } else {
        i++; // a two-character escape (ESC 7, ESC 8, ESC c…)
      }
    } else if (c === "\r") {
      x = 0;
      pendingWrap = false;
    } else if (c === "\n") {
      // The pseudo-terminal's output processing (onlcr) turns \n into \r\n.
      x = 0;
      pendingWrap = false;
      lineFeed();
    } else if (c === "\b") {
      x = Math.max(0, x - 1);
      pendingWrap = false;
    } else if (c >= " ") {
      put(c);
    }
  }
  const visible = screen.map((r) => r.join("").trimEnd());
  while (visible.length && visible[visible.length - 1] === "") visible.pop();
  return { lines: [...scrolled, ...visible], wraps, frames, resizes };
}
