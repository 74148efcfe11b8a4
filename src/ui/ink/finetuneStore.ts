import type { SlmEvent } from "../../core/events.js";
import { emptyTrainState, foldTrain, type TrainState } from "../trainState.js";
import { TaskStore } from "./taskStore.js";

/** A fine-tune's live state: training numbers here, every other event to the usual task list. */
export class FinetuneStore {
  readonly tasks = new TaskStore();
  private train: TrainState = emptyTrainState();
  private listeners = new Set<() => void>();

  get = (): TrainState => this.train;

  subscribe = (fn: () => void): (() => void) => {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  };

  push(e: SlmEvent, verbose = false): void {
    const next = foldTrain(this.train, e);
    if (!next) {
      this.tasks.push(e, verbose);
      return;
    }
    this.train = next;
    for (const fn of this.listeners) fn();
  }
}
