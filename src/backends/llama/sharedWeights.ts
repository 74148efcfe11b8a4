import { realpathSync } from "node:fs";
import path from "node:path";
import type { Llama, LlamaModel } from "node-llama-cpp";

/**
 * One LlamaModel per weights file in a process, shared by every context that runs on it: a server that
 * answers `base`, `base+sub` and `base+add` holds the base's weights once, with one context per adapter
 * set. Each context is a user; the weights are freed when the last one goes, and a LoRA adapter when the
 * last context that used it goes.
 */
export interface WeightsLease {
  model: LlamaModel;
  /** Whether this lease read the file (false: it shares weights another context had loaded). */
  loaded: boolean;
  /** Call after the lease's context is disposed: frees its adapters and then the weights, if unused. */
  release(): Promise<void>;
}

interface Shared {
  model: Promise<LlamaModel>;
  users: number;
  /** Contexts using each adapter file (by the path node-llama-cpp keys it by). */
  adapters: Map<string, number>;
}

/**
 * node-llama-cpp 3.21.1 (pinned) caches each adapter it loads onto a model until the model is disposed
 * (`_loraAdapters`, path → native adapter); llama.cpp can free one earlier (llama_adapter_lora_free, which
 * the native object's dispose() calls). This is the narrow part of that internal state used here.
 */
interface LoraCache {
  _loraAdapters?: Map<string, { dispose(): Promise<void> }>;
}

const byRuntime = new WeakMap<Llama, Map<string, Shared>>();

function keyOf(file: string, gpuLayers: number | "auto"): string {
  let real = file;
  try {
    real = realpathSync(file);
  } catch {
    // loadModel reports a missing file itself
  }
  return `${real}\0${gpuLayers}`;
}

/** The weights of `file` with `gpuLayers` layers on the GPU: loaded now, or shared with a context that has them. */
export async function acquireWeights(llama: Llama, file: string, gpuLayers: number | "auto", adapterPaths: readonly string[], signal?: AbortSignal): Promise<WeightsLease> {
  let all = byRuntime.get(llama);
  if (!all) byRuntime.set(llama, (all = new Map()));
  const key = keyOf(file, gpuLayers);
  let s = all.get(key);
  const loaded = !s;
  if (!s) {
    const created: Shared = { model: llama.loadModel({ modelPath: file, gpuLayers, loadSignal: signal }), users: 0, adapters: new Map() };
    s = created;
    all.set(key, created);
    // A failed load is forgotten, so the next try reads the file again.
    created.model.catch(() => {
      if (all.get(key) === created) all.delete(key);
    });
  }
  const shared = s;
  shared.users++;
  let model: LlamaModel;
  try {
    model = await shared.model;
  } catch (err) {
    shared.users--;
    throw err;
  }
  const used = adapterPaths.map((p) => path.resolve(process.cwd(), p));
  for (const p of used) shared.adapters.set(p, (shared.adapters.get(p) ?? 0) + 1);
  let released = false;
  return {
    model,
    loaded,
    release: async () => {
      if (released) return;
      released = true;
      for (const p of used) {
        const n = (shared.adapters.get(p) ?? 1) - 1;
        if (n > 0) {
          shared.adapters.set(p, n);
          continue;
        }
        shared.adapters.delete(p);
        const cache = (model as unknown as LoraCache)._loraAdapters;
        const lora = cache?.get(p);
        if (lora && shared.users > 1) {
          cache!.delete(p);
          await lora.dispose().catch(() => undefined);
        }
      }
      if (--shared.users > 0) return;
      if (all.get(key) === shared) all.delete(key);
      await model.dispose();
    },
  };
}
