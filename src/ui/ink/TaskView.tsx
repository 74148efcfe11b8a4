import { Box, Static, Text } from "ink";
import { Fragment, useSyncExternalStore } from "react";
import { formatDuration } from "../../core/format.js";
import { fitLine, type LineField, truncateEnd } from "../layout.js";
import { progressParts } from "../progress.js";
import type { TaskLine, TaskStore } from "./taskStore.js";
import { useColumns, useTick } from "./useColumns.js";

const MARKS = { done: "✓", fail: "✗", skip: "·", log: " ", warn: "!" } as const;
const COLORS = { done: "green", fail: "red", skip: "gray", log: undefined, warn: "yellow" } as const;

const BAR = 24;
export const bar = (ratio: number, width: number) => {
  const filled = Math.max(0, Math.min(width, Math.round(ratio * width)));
  return "█".repeat(filled) + "░".repeat(width - filled);
};

/**
 * A running step as the fields of one line. Kept longest: the title (shortened in the middle, so a file
 * keeps its quant type and extension), the percentage, the bar (narrower, then gone), what the step is
 * busy with, the amount, the rate, the time left, the time so far: the last ones go first.
 */
function activeFields(line: TaskLine, now: number, columns: number): LineField[] {
  const elapsed = (line.lastTs - line.startedAt) / 1000;
  const hasTotal = line.total !== undefined && line.total > 0 && line.current !== undefined;
  const p = line.current !== undefined ? progressParts({ current: line.current, total: line.total, unit: line.unit ?? "bytes", rate: line.rate, rateUnit: line.rateUnit, elapsed }) : {};
  const running = (now - line.startedAt) / 1000;
  const fields: LineField[] = [
    { key: "mark", text: "›", priority: Infinity },
    // The title keeps at least 40 % of the line before any number is shown beside it.
    { key: "title", text: line.title, priority: Infinity, min: Math.max(16, Math.floor(columns * 0.4)) },
    { key: "bar", text: hasTotal ? bar(line.current! / line.total!, BAR) : "", priority: 60, min: 8, fit: (w) => bar(line.current! / line.total!, w) },
    { key: "percent", text: p.percent ?? "", priority: 90 },
    { key: "now", text: line.now ?? "", priority: 55, min: 12, fit: (w) => truncateEnd(line.now!, w) },
    { key: "amount", text: p.amount ?? "", priority: 50 },
    { key: "rate", text: p.rate ?? "", priority: 40 },
    { key: "eta", text: p.eta ?? "", priority: 30 },
    { key: "elapsed", text: running >= 1 ? `${formatDuration(running)} elapsed` : "", priority: 20, min: formatDuration(running).length, fit: () => formatDuration(running) },
  ];
  return fields;
}

function Active({ line, columns, now }: { line: TaskLine; columns: number; now: number }) {
  // One column spare: some terminals wrap as soon as the last column is written.
  const placed = fitLine(activeFields(line, now, columns), Math.max(1, columns - 1));
  return (
    <Text wrap="truncate-end">
      {placed.map((f, i) => (
        <Fragment key={f.key}>
          {i > 0 ? " " : ""}
          {f.key === "mark" ? (
            <Text color="cyan">{f.text}</Text>
          ) : f.key === "bar" ? (
            <>
              <Text color="cyan">{f.text.replace(/░/g, "")}</Text>
              <Text dimColor>{f.text.replace(/█/g, "")}</Text>
            </>
          ) : f.key === "title" || f.key === "now" ? (
            <Text>{f.text}</Text>
          ) : (
            <Text dimColor>{f.text}</Text>
          )}
        </Fragment>
      ))}
    </Text>
  );
}

/** The live view of a long command: finished steps scroll up, running ones show a progress bar. */
export function TaskView({ store }: { store: TaskStore }) {
  const state = useSyncExternalStore(store.subscribe, store.get);
  const columns = useColumns();
  const now = useTick(1000);
  return (
    <>
      <Static items={state.finished}>
        {(item) => (
          <Text key={item.key} color={COLORS[item.kind]}>
            {MARKS[item.kind]} {item.text}
          </Text>
        )}
      </Static>
      <Box flexDirection="column">
        {state.active.map((l) => (
          <Active key={l.id} line={l} columns={columns} now={Math.max(now, l.lastTs)} />
        ))}
      </Box>
    </>
  );
}

