import type { LlamaContext, LlamaModel } from "node-llama-cpp";
import { emit, type BackendContext } from "../../../core/events.js";
import type { LoadedModel } from "../loader.js";
import type { NativeRowsHandle } from "../likelihood.js";
import { DistributionReader, logProbOf } from "../logprobs.js";
import { type NativeLogitsAddon, nativeLogitsAddon } from "./addon.js";

/**
 * Which loaded models may have their rows read by the addon: each model is probed once, on a small
 * context of its own, against the slow exact path (node-llama-cpp's sampler) before the addon touches
 * any context of it that slm reads for real.
 */

/** Largest |difference| of a log-probability between the addon and the slow exact path that passes the probe. */
export const PROBE_TOLERANCE = 1e-5;
const PROBE_TEXT = "The quick brown fox jumps over the lazy dog. 12 + 34 = 46; 7 * 8 = 56.";
const PROBE_TOP = 10;

const verdicts = new WeakMap<LlamaModel, NativeLogitsAddon | null>();
/** Probes under way, so that concurrent callers (a server's first requests) share one. */
const probing = new WeakMap<LlamaModel, Promise<NativeLogitsAddon | undefined>>();
let toldWhy = false;

/**
 * Makes the addon ready for `loaded`'s contexts when it can be (built on first use, then probed once
 * per model); otherwise logs once per process why log-probabilities take the slow exact path.
 */
export function prepareNativeRows(loaded: LoadedModel, ctx: BackendContext = {}): Promise<NativeLogitsAddon | undefined> {
  const known = verdicts.get(loaded.model);
  if (known !== undefined) return Promise.resolve(known ?? undefined);
  let p = probing.get(loaded.model);
  if (!p) {
    p = decide(loaded, ctx).finally(() => probing.delete(loaded.model));
    probing.set(loaded.model, p);
  }
  return p;
}

async function decide(loaded: LoadedModel, ctx: BackendContext): Promise<NativeLogitsAddon | undefined> {
  const outcome = await nativeLogitsAddon(ctx);
  const reason = "reason" in outcome ? outcome.reason : await probeModel(loaded, outcome.addon).catch((err: unknown) => `its probe failed: ${(err as Error).message}`);
  const addon = reason || "reason" in outcome ? undefined : outcome.addon;
  verdicts.set(loaded.model, addon ?? null);
  if (reason && !toldWhy) {
    toldWhy = true;
    emit(ctx.onEvent, { type: "log", level: "warn", message: `Log-probabilities take the slow exact path (about 20 ms a position at a 50k vocabulary): slm's native addon is not used, ${reason}. \`slm doctor\` says more.` });
  }
  return addon;
}

/** The addon when `prepareNativeRows` accepted it for `model`. */
export function nativeRowsAddon(model: LlamaModel): NativeLogitsAddon | undefined {
  return verdicts.get(model) ?? undefined;
}

/**
 * node-llama-cpp's AddonContext of `context` when the addon may read it: the addon checks that it
 * belongs to `model` (pointers compared before anything is dereferenced) and it has the size
 * node-llama-cpp's own binding reports.
 */
export function bindContext(addon: NativeLogitsAddon, model: LlamaModel, context: LlamaContext): object | undefined {
  const addonContext = (context as unknown as { _ctx?: { getContextSize?: () => number } })._ctx;
  const addonModel = (model as unknown as { _model?: object })._model;
  if (!addonContext || !addonModel || typeof addonContext.getContextSize !== "function") return undefined;
  try {
    const b = addon.checkBinding(addonContext, addonModel);
    return b.nCtx === addonContext.getContextSize() ? addonContext : undefined;
  } catch {
    return undefined;
  }
}

const handles = new WeakMap<LlamaContext, NativeRowsHandle | null>();

/** The addon and `context`'s AddonContext, when `loaded`'s model passed the probe and the context the binding check. */
export function nativeRowsFor(loaded: LoadedModel, context: LlamaContext): NativeRowsHandle | undefined {
  const addon = nativeRowsAddon(loaded.model);
  if (!addon) return undefined;
  let h = handles.get(context);
  if (h === undefined) {
    const handle = bindContext(addon, loaded.model, context);
    h = handle ? { addon, handle } : null;
    handles.set(context, h);
  }
  return h ?? undefined;
}

/** Undefined when the addon's log-probabilities equal the slow path's on a probe text, else why not. */
export async function probeModel(loaded: LoadedModel, addon: NativeLogitsAddon): Promise<string | undefined> {
  // A few rows: each costs ~20 ms through the sampler at a 49k vocabulary, and every eval start pays them.
  const tokens = loaded.model.tokenize(PROBE_TEXT).slice(0, 9);
  if (tokens.length < 2) return "the probe text is too short in this vocabulary";
  const context = await loaded.model.createContext({ contextSize: 16, sequences: 1, threads: { ideal: loaded.settings.threads, min: 1 } });
  const reader = new DistributionReader(loaded, context, 1);
  try {
    const handle = bindContext(addon, loaded.model, context);
    if (!handle) return "its check of node-llama-cpp's context failed (another node-llama-cpp build?)";
    const outputs = Uint32Array.from({ length: tokens.length - 1 }, (_, i) => i);
    await reader.decode([{ sequence: 0, start: 0, tokens: Uint32Array.from(tokens), outputs }]);
    const indexes = reader.outputIndexes();
    const targets = Int32Array.from(tokens.slice(1));
    const logprobs = new Float64Array(outputs.length);
    const tops = new Int32Array(outputs.length);
    addon.scoreRows(handle, indexes, targets, logprobs, tops);
    for (let k = 0; k < outputs.length; k++) {
      const top = addon.topRow(handle, indexes[k]!, targets[k]!, PROBE_TOP);
      const row = await reader.row(k, 0);
      const pairs: [number, number][] = [[targets[k]!, logprobs[k]!], [targets[k]!, top[0]!]];
      for (let j = 1; j < top.length; j += 2) pairs.push([top[j]!, top[j + 1]!]);
      for (const [token, lp] of pairs) {
        const diff = Math.abs(lp - logProbOf(row, token));
        if (!(diff <= PROBE_TOLERANCE)) return `its log-probability of token ${token} at probe position ${k} differs from the exact path's by ${diff.toExponential(2)}`;
      }
      if (logProbOf(row, tops[k]!) !== logProbOf(row, row.top)) return `its most likely token at probe position ${k} is ${tops[k]}, the exact path's ${row.top}`;
    }
    return undefined;
  } finally {
    reader.dispose();
    await context.dispose();
  }
}
