import type { SlmEvent } from "../core/events.js";
import { plainEventWriter } from "./plain.js";
import { emptyTrainState, foldTrain, lossLine, speedLine } from "./trainState.js";

/**
 * Plain lines for a fine-tune (logs, CI, pipes): a training status line at most every `everyMs`
 * (steps, speed, ETA, memory, losses) instead of one line per metric, each evaluation as it comes, and
 * everything else as plainEventWriter writes it.
 */
export function plainFinetuneWriter(write: (line: string) => void, verbose: boolean, everyMs = 10_000): (e: SlmEvent) => void {
  const others = plainEventWriter(write, verbose);
  let s = emptyTrainState();
  let last = -Infinity;
  let written = "";
  const status = (force: boolean, ts: number) => {
    const line = `  ${[speedLine(s), lossLine(s)].filter(Boolean).join("  ")}`;
    if (line.trim() && line !== written && (force || ts - last >= everyMs)) {
      write(line);
      written = line;
      last = ts;
    }
  };
  return (e) => {
    const next = foldTrain(s, e);
    if (!next) {
      // The last numbers of a run that ends (or stops) before the next timed line.
      if (e.type === "step" && e.id === "train" && e.status !== "start") status(true, e.ts);
      others(e);
      return;
    }
    s = next;
    if (e.type === "metric" && e.name === "eval_loss") write(`  eval loss ${e.value.toFixed(4)} at step ${e.step ?? s.step ?? "?"}`);
    else status(false, e.ts);
  };
}
