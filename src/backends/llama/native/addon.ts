import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import type { BackendContext } from "../../../core/events.js";
import { isTruthyEnv } from "../../../core/paths.js";
import { storageErrorOf } from "../../../core/storage.js";
import { ensureAddon } from "./build.js";

/** What native/slm_logits.cc exports (API version 2). The objects are node-llama-cpp's AddonContext / AddonModel. */
export interface NativeLogitsAddon {
  apiVersion: number;
  checkBinding(addonContext: object, addonModel: object): { nVocab: number; nCtx: number; apiVersion: number };
  /** For each output row indexes[k] of the last decode: logprobs[k] = ln p(targets[k]), tops[k] = arg-max (lowest id among ties). */
  scoreRows(addonContext: object, indexes: Int32Array, targets: Int32Array, logprobs: Float64Array, tops: Int32Array): void;
  /**
   * For rows baseIndexes[k] and indexes[k]: kl[k] = KL(P_base ‖ P) over the whole vocabulary in nats, and
   * each model's ln p(targets[k]) and arg-max, as scoreRows gives them.
   */
  klRows(baseContext: object, baseIndexes: Int32Array, addonContext: object, indexes: Int32Array, targets: Int32Array, kl: Float64Array, baseLogprobs: Float64Array, logprobs: Float64Array, baseTops: Int32Array, tops: Int32Array): void;
  /** [ln p(target), token₀, ln p₀, …] with the topK most likely tokens, most likely first (lowest id among ties). */
  topRow(addonContext: object, index: number, target: number, topK: number): Float64Array;
}

const API_VERSION = 2;

/**
 * The libllama shared library this process has loaded (node-llama-cpp's prebuilt binding, or the one
 * `slm setup engine` built), from Node's own list of loaded shared objects, which Linux, macOS and
 * Windows all fill. Undefined before node-llama-cpp loaded its binding.
 */
export function loadedLibllama(): string | undefined {
  const report = process.report?.getReport() as { sharedObjects?: string[] } | undefined;
  // libllama.so, libllama.v0.4.0.so, libllama.dylib, llama.dll — not libllama-common.
  const name = /^(lib)?llama(\.v\d+(\.\d+)*)?\.(so|dylib|dll)(\.\d+)*$/;
  return report?.sharedObjects?.find((f) => name.test(path.basename(f)) && existsSync(f));
}

export type AddonOutcome = { addon: NativeLogitsAddon; file: string } | { reason: string };

let loading: Promise<AddonOutcome> | undefined;

/**
 * slm's addon for this process's libllama, built on first use (a few seconds, once per libllama and
 * node version) and loaded once per process; or why it cannot be used. SLM_NATIVE_LOGITS=0 turns it off.
 */
export function nativeLogitsAddon(ctx: BackendContext = {}): Promise<AddonOutcome> {
  loading ??= load(ctx);
  return loading;
}

async function load(ctx: BackendContext): Promise<AddonOutcome> {
  const off = process.env.SLM_NATIVE_LOGITS;
  if (off !== undefined && off !== "" && !isTruthyEnv(off)) return { reason: `SLM_NATIVE_LOGITS=${off} turns it off` };
  if (process.platform === "win32") return { reason: "it is not built on Windows yet" };
  const libllama = loadedLibllama();
  if (!libllama) return { reason: "the loaded libllama was not found among this process's shared libraries" };
  let file: string;
  try {
    file = (await ensureAddon(libllama, ctx)).file;
  } catch (err) {
    if ((err as Error).name === "CancelledError") throw err;
    // A cache folder that cannot be written shows as a raw errno (ENOENT from mkdir on a read-only
    // mount): say which place and what to change, as every other write of slm does.
    const storage = storageErrorOf(err);
    return { reason: `it could not be built: ${storage ? `${firstLine(storage)} (SLM_NATIVE_DIR puts its cache elsewhere)` : firstLine(err)}` };
  }
  try {
    const addon = createRequire(import.meta.url)(file) as NativeLogitsAddon;
    if (addon.apiVersion !== API_VERSION) return { reason: `${file} has API version ${addon.apiVersion}, not ${API_VERSION}` };
    return { addon, file };
  } catch (err) {
    return { reason: `${file} does not load: ${firstLine(err)}` };
  }
}

/** The message's first line without its final full stop: it goes inside a sentence. */
function firstLine(err: unknown): string {
  return String((err as Error)?.message ?? err).split("\n")[0]!.slice(0, 300).replace(/\.+$/, "");
}
