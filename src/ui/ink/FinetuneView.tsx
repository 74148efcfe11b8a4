import { Box, Text } from "ink";
import { Fragment, useSyncExternalStore } from "react";
import { areaChart } from "../chart.js";
import { fitLine, fitText, type LineField } from "../layout.js";
import { lossFields, speedFields, type TrainState } from "../trainState.js";
import type { FinetuneStore } from "./finetuneStore.js";
import { bar, TaskView } from "./TaskView.js";
import { useColumns } from "./useColumns.js";

const CHART_ROWS = 6;
const INDENT = 2;

/** The bar and the speed fields on one line that fits `width`. */
function Progress({ s, width }: { s: TrainState; width: number }) {
  const ratio = s.total && s.step !== undefined ? s.step / s.total : 0;
  const fields: LineField[] = [{ key: "bar", priority: 60, min: 8, text: s.total ? bar(ratio, 24) : "", fit: (w) => bar(ratio, w) }, ...speedFields(s)];
  const placed = fitLine(fields, width, 2);
  return (
    <Text wrap="truncate-end">
      {placed.map((f, i) => (
        <Fragment key={f.key}>
          {i > 0 ? "  " : ""}
          {f.key === "bar" ? (
            <>
              <Text color="cyan">{f.text.replace(/░/g, "")}</Text>
              <Text dimColor>{f.text.replace(/█/g, "")}</Text>
            </>
          ) : (
            f.text
          )}
        </Fragment>
      ))}
    </Text>
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
  const columns = useColumns();
  // The chart's axis labels take 10 columns; one column spare, as for every live line.
  const width = Math.max(10, Math.min(60, columns - INDENT - 11));
  const line = Math.max(1, columns - INDENT - 1);
  const started = s.step !== undefined || s.loss.length > 0;
  return (
    <>
      <TaskView store={store.tasks} />
      {started ? (
        <Box flexDirection="column" marginLeft={INDENT}>
          <Progress s={s} width={line} />
          <Text wrap="truncate-end">{fitText(lossFields(s), line, 2)}</Text>
          <LossChart s={s} width={width} />
        </Box>
      ) : null}
    </>
  );
}
