/**
 * A small area chart for the terminal (the live loss curve): values are averaged into at most `width`
 * columns and drawn bottom-up with eighth-block characters, so `height` rows show height × 8 levels.
 */
const BLOCKS = ["▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"] as const;

/** Averages `values` into at most `width` buckets of consecutive values, in order. */
export function bucketMeans(values: readonly number[], width: number): number[] {
  if (values.length <= width) return [...values];
  const out: number[] = [];
  for (let c = 0; c < width; c++) {
    const from = Math.floor((c * values.length) / width);
    const to = Math.floor(((c + 1) * values.length) / width);
    let sum = 0;
    for (let i = from; i < to; i++) sum += values[i]!;
    out.push(sum / (to - from));
  }
  return out;
}

export interface Chart {
  /** Rows from top to bottom, each `columns` characters wide. */
  rows: string[];
  min: number;
  max: number;
  columns: number;
}

export function areaChart(values: readonly number[], width: number, height: number): Chart | undefined {
  const finite = values.filter(Number.isFinite);
  if (finite.length === 0 || width < 1 || height < 1) return undefined;
  const cols = bucketMeans(finite, width);
  const min = Math.min(...cols);
  const max = Math.max(...cols);
  const levels = height * 8;
  // The lowest value still gets one eighth, so every column is visible; a flat series sits mid-height.
  const level = (v: number) => (max === min ? Math.ceil(levels / 2) : 1 + Math.round(((v - min) / (max - min)) * (levels - 1)));
  const heights = cols.map(level);
  const rows: string[] = [];
  for (let r = height - 1; r >= 0; r--) {
    rows.push(heights.map((h) => (h >= (r + 1) * 8 ? "█" : h > r * 8 ? BLOCKS[h - r * 8 - 1]! : " ")).join(""));
  }
  return { rows, min, max, columns: cols.length };
}
