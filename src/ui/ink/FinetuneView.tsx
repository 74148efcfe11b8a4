import { Box, Text, useStdout } from "ink";
import { useSyncExternalStore } from "react";
import { areaChart } from "../chart.js";
import { lossLine, speedLine, type TrainState } from "../trainState.js";
import type { FinetuneStore } from "./finetuneStore.js";
import { TaskView } from "./TaskView.js";

const CHART_ROWS = 6;

function Progress({ s }: { s: TrainState }) {
  const width = 24;
  const filled = s.total && s.step !== undefined ? Math.max(0, Math.min(width, Math.round((s.step / s.total) * width))) : 0;
  return (
    <Box gap={1}>
      {s.total ? (
        <Text>
          <Text color="cyan">{"█".repeat(filled)}</Text>
          <Text dimColor>{"░".repeat(width - filled)}</Text>
        </Text>
      ) : null}
      <Text>{speedLine(s)}</Text>
    </Box>
  );
}

/** The loss by step as an area chart, with the top and bottom values on its axis. */
function LossChart({ s, width }: { s: TrainState; width: number }) {
  const chart = areaChart(s.loss.map((l) => l.value), width, CHART_ROWS);
  if (!chart) return null;
  const label = (v: number) => v.toFixed(4).padStart(8);
  const first = s.loss[0]!.step;
  const last = s.loss[s.loss.length - 1]!.step;
  return (
    <Box flexDirection="column">
      {chart.rows.map((row, i) => (
        <Text key={i}>
          <Text dimColor>{i === 0 ? `${label(chart.max)} ┤` : i === chart.rows.length - 1 ? `${label(chart.min)} ┤` : `${" ".repeat(8)} │`}</Text>
          <Text color="green">{row}</Text>
        </Text>
      ))}
      <Text dimColor>{`${" ".repeat(10)}loss, step ${first} → ${last}`}</Text>
    </Box>
  );
}

/** The fine-tune's live view: the step list, then the training panel (progress, speed, losses, curve). */
export function FinetuneView({ store }: { store: FinetuneStore }) {
  const s = useSyncExternalStore(store.subscribe, store.get);
  const { stdout } = useStdout();
  const width = Math.max(10, Math.min(60, (stdout?.columns ?? 80) - 12));
  const started = s.step !== undefined || s.loss.length > 0;
  return (
    <>
      <TaskView store={store.tasks} />
      {started ? (
        <Box flexDirection="column" marginLeft={2}>
          <Progress s={s} />
          <Text>{lossLine(s)}</Text>
          <LossChart s={s} width={width} />
        </Box>
      ) : null}
    </>
  );
}
