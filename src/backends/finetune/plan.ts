import path from "node:path";
import { hasTeacher } from "../../core/datasets/formats.js";
import { type Dataset, loadDataset } from "../../core/datasets/load.js";
import { splitHoldout } from "../../core/datasets/split.js";
import { UsageError } from "../../core/errors.js";
import { assertFreeName } from "../store/derived.js";
import { shortName } from "../store/naming.js";
import { type FinetuneBase, resolveFinetuneBase } from "./base.js";
import { DEFAULTS, type FinetuneRequest, type FinetuneSettings, settingsOf } from "./options.js";
import { checkRunDir, runDirFor } from "./run.js";

/** A request checked against everything that needs neither Python nor a download. */
export interface FinetunePlan {
  request: FinetuneRequest;
  settings: FinetuneSettings;
  base: FinetuneBase;
  /** `<base>+<out>`: the registered "base + adapter" model, and the run's folder name. */
  name: string;
  /** With --merge: `<base>+<out>-merged`. */
  mergedName?: string;
  runDir: string;
  runState: "fresh" | "resume" | "stale";
  train: Dataset;
  /** From --eval-data, or held out of the training data by --val-split. */
  eval?: Dataset;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$/;

/** Validates options and data, resolves the base and the names; throws usage errors before anything runs. */
export function planFinetune(request: FinetuneRequest): FinetunePlan {
  const settings = settingsOf(request);
  // "+" separates base and fine-tune in `<base>+<name>`, so the data file's name cannot bring one.
  const out = request.out ?? shortName(path.basename(request.data).replace(/\.jsonl?$/i, "")).replaceAll("+", "-");
  if (!NAME.test(out)) throw new UsageError(`"${out}" cannot be a fine-tune's name: use letters, digits, ".", "_" or "-" (at most 80).`);
  const base = resolveFinetuneBase(request.ref);
  const name = `${base.name}+${out}`;
  const mergedName = request.merge ? `${name}-merged` : undefined;
  assertFreeName(name);
  if (mergedName) assertFreeName(mergedName);
  // Each file is read and checked whole; errors name the file, the line and the problem.
  let train = loadDataset(request.data, { requireAnswer: true });
  let evalSet = request.evalData !== undefined ? loadDataset(request.evalData, { requireAnswer: true }) : undefined;
  settings.kdAlpha = distillWeight(request, train);
  if (request.valSplit !== undefined) {
    const { train: rest, held } = splitHoldout(train.examples, request.valSplit, settings.seed);
    evalSet = { ...train, examples: held };
    train = { ...train, examples: rest };
  }
  const runDir = runDirFor(name);
  const runState = checkRunDir(runDir, name, !!request.resume);
  return { request, settings, base, name, mergedName, runDir, runState, train, eval: evalSet };
}

/** --kd-alpha, 0.5 by default for data with the teacher's log-probabilities; an error for data without them. */
function distillWeight(request: FinetuneRequest, train: Dataset): number | null {
  const teacher = train.examples.some(hasTeacher);
  if (teacher) return request.kdAlpha ?? DEFAULTS.kdAlpha;
  if (request.kdAlpha === undefined) return null;
  throw new UsageError(`--kd-alpha needs the teacher's log-probabilities in the data, and no example of ${train.file} has a "teacher" field.`, {
    hint: "Make the data with slm distill --kd-logprobs K, or drop --kd-alpha to train on the answers alone (sequence-level distillation).",
  });
}
