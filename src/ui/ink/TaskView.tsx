import { Box, Static, Text } from "ink";
import { useSyncExternalStore } from "react";
import { progressText } from "../plain.js";
import type { TaskLine, TaskStore } from "./taskStore.js";

const MARKS = { done: "✓", fail: "✗", skip: "·", log: " ", warn: "!" } as const;
const COLORS = { done: "green", fail: "red", skip: "gray", log: undefined, warn: "yellow" } as const;

function Bar({ ratio, width = 24 }: { ratio: number; width?: number }) {
  const filled = Math.max(0, Math.min(width, Math.round(ratio * width)));
  return (
    <Text>
      <Text color="cyan">{"█".repeat(filled)}</Text>
      <Text dimColor>{"░".repeat(width - filled)}</Text>
    </Text>
  );
}

function Active({ line }: { line: TaskLine }) {
  const hasTotal = line.total !== undefined && line.total > 0 && line.current !== undefined;
  return (
    <Box gap={1}>
      <Text color="cyan">›</Text>
      <Text>{line.title}</Text>
      {hasTotal ? <Bar ratio={line.current! / line.total!} /> : null}
      {line.current !== undefined ? <Text dimColor>{progressText(line.current, line.total, line.unit ?? "bytes", line.rate)}</Text> : null}
    </Box>
  );
}

/** The live view of a long command: finished steps scroll up, running ones show a progress bar. */
export function TaskView({ store }: { store: TaskStore }) {
  const state = useSyncExternalStore(store.subscribe, store.get);
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
          <Active key={l.id} line={l} />
        ))}
      </Box>
    </>
  );
}
