import { CancelledError } from "../../core/errors.js";
import { emit, type EventSink } from "../../core/events.js";
import { ContextLengthError, EmbeddingsUnavailableError } from "../runtime/errors.js";
import { loadRuntimeModel } from "../runtime/load.js";
import type { GenerationSlot, RuntimeLoadOptions, RuntimeModel } from "../runtime/types.js";
import type { ModelEntry } from "../store/types.js";
import { HttpError, withoutPaths } from "./httpError.js";
import type { ServedModel, ServedModels } from "./models.js";
import { countOf } from "../../core/format.js";

export interface PoolOptions {
  /** Runtime settings for every model this pool loads (--ctx, --threads, --gpu, --lora, --dtype). */
  load: Omit<RuntimeLoadOptions, "sequences">;
  /** Sequences per model context: this many requests generate at once, the rest wait in order. */
  parallel: number;
  /** Unload a model this long after its last request ended; 0 keeps models loaded. */
  idleTimeoutMs: number;
  /** Which models requests may name, and the ids they are shown by. */
  models: ServedModels;
  onEvent?: EventSink;
}

/** A slot of a loaded model, held for one request. */
export interface Lease {
  id: string;
  model: RuntimeModel;
  slot: GenerationSlot;
  /** Gives the slot back; `clean` after a failure, whose leftover state is then wiped first. */
  release(clean?: boolean): Promise<void>;
}

export interface ModelStatus {
  id: string;
  state: "loading" | "ready";
  /** Requests generating now / waiting for a free sequence. */
  busy: number;
  queued: number;
  parallel: number;
  contextSize?: number;
  pinned: boolean;
}

interface Waiter {
  resolve(s: GenerationSlot): void;
  reject(err: unknown): void;
}

/** One model in the pool: loading or loaded, with its slots and the requests waiting for them. */
class PooledModel {
  loaded?: RuntimeModel;
  ready!: Promise<RuntimeModel>;
  /** Requests that hold or wait for this model: it is unloaded only when none do. */
  users = 0;
  busy = 0;
  created = 0;
  readonly free: GenerationSlot[] = [];
  readonly waiters: Waiter[] = [];
  idleTimer?: NodeJS.Timeout;
  pinned = false;
  /** The name a client can ask for again (never a filesystem path: see models.ts). */
  readonly id: string;
  readonly entry: ModelEntry;
  constructor(
    readonly key: string,
    served: ServedModel,
  ) {
    this.id = served.id;
    this.entry = served.entry;
  }
}

/**
 * Loads models on first use, shares each model between requests (one slot per request, up to
 * `parallel`, then a FIFO queue) and unloads a model after it has been idle for `idleTimeoutMs`.
 * Slots are kept between requests rather than recreated: the runtime then reuses the evaluated prefix
 * of the previous request, which saves re-reading a shared system prompt or an earlier turn.
 */
export class ModelPool {
  private readonly models = new Map<string, PooledModel>();
  /** Disposals in progress: a model loaded again waits for them, so two copies never sit in memory. */
  private readonly unloading = new Set<Promise<void>>();
  private readonly shutdown = new AbortController();

  constructor(private readonly o: PoolOptions) {}

  /** Loads a model now and keeps it loaded (models named on the command line). */
  async preload(ref: string): Promise<string> {
    const m = this.modelFor(ref);
    m.pinned = true;
    this.stopIdleTimer(m);
    await m.ready;
    return m.id;
  }

  /**
   * Readies the model's exact log-probability reader (llama.cpp: slm's addon, built once per machine and
   * probed once per model; until then, and where it cannot be used, the slow exact path). Its step and its
   * one warning go where the pool's events go.
   */
  async prepareLogprobs(model: RuntimeModel): Promise<void> {
    await model.prepareLogprobs?.({ onEvent: this.o.onEvent });
  }

  /** Waits for the model and a free slot of it; rejects with CancelledError if `signal` fires first. */
  async lease(ref: string, signal: AbortSignal): Promise<Lease> {
    const m = this.modelFor(ref);
    m.users++;
    this.stopIdleTimer(m);
    let slot: GenerationSlot;
    let model: RuntimeModel;
    try {
      model = await m.ready;
      slot = await this.acquire(m, model, signal);
    } catch (err) {
      this.leave(m);
      throw err;
    }
    m.busy++;
    let released = false;
    return {
      id: m.id,
      model,
      slot,
      release: async (clean = false) => {
        if (released) return;
        released = true;
        m.busy--;
        await this.giveBack(m, model, slot, clean);
        this.leave(m);
      },
    };
  }

  /** Embeddings, from models whose runtime computes them (a 400 model_not_embedding otherwise). */
  async embed(ref: string, inputs: string[], signal: AbortSignal): Promise<{ id: string; vectors: number[][]; tokens: number }> {
    const m = this.modelFor(ref);
    m.users++;
    this.stopIdleTimer(m);
    try {
      const model = await m.ready;
      if (!model.embed) throw new HttpError(400, `${m.id} cannot compute embeddings (its runtime, ${model.runtime}, does not).`, { param: "model", code: "model_not_embedding" });
      try {
        return { id: m.id, ...(await model.embed(inputs, signal)) };
      } catch (err) {
        if (err instanceof EmbeddingsUnavailableError) throw new HttpError(400, withoutPaths(err.message), { param: "model", code: "model_not_embedding" });
        if (err instanceof ContextLengthError) throw new HttpError(400, withoutPaths(err.message), { param: "input", code: "context_length_exceeded" });
        throw err;
      }
    } finally {
      this.leave(m);
    }
  }

  /** Runs `use` on the loaded model (loading it first) without taking a slot: tokenizing waits for no generation. */
  async withModel<T>(ref: string, use: (model: RuntimeModel, id: string) => T | Promise<T>): Promise<T> {
    const m = this.modelFor(ref);
    m.users++;
    this.stopIdleTimer(m);
    try {
      return await use(await m.ready, m.id);
    } finally {
      this.leave(m);
    }
  }

  /** The model a request names, without loading it (GET /v1/models/{id}). */
  resolve(ref: string): ServedModel {
    return this.o.models.resolve(ref);
  }

  /** Every model a client may name without a path. */
  names(): string[] {
    return this.o.models.names();
  }

  status(): ModelStatus[] {
    return [...this.models.values()].map((m) => ({
      id: m.id,
      state: m.loaded ? "ready" : "loading",
      busy: m.busy,
      queued: m.waiters.length,
      parallel: this.o.parallel,
      contextSize: m.loaded?.contextSize,
      pinned: m.pinned,
    }));
  }

  /** Refuses new work, fails queued requests, and disposes every model once its disposal is safe. */
  async close(): Promise<void> {
    this.shutdown.abort();
    const all = [...this.models.values()];
    this.models.clear();
    for (const m of all) {
      this.stopIdleTimer(m);
      for (const w of m.waiters.splice(0)) w.reject(new CancelledError("The server is shutting down."));
    }
    await Promise.allSettled([...all.map((m) => this.dispose(m)), ...this.unloading]);
  }

  private modelFor(ref: string): PooledModel {
    if (this.shutdown.signal.aborted) throw new HttpError(503, "The server is shutting down.");
    // Resolved for each request (the registry is read again), so models pulled while the server runs are found.
    const served = this.o.models.resolve(ref);
    const { entry } = served;
    const key = `${entry.path}\0${entry.dtype ?? ""}\0${JSON.stringify(entry.adapters ?? [])}`;
    let m = this.models.get(key);
    if (!m) {
      const created = new PooledModel(key, served);
      m = created;
      this.models.set(key, created);
      created.ready = this.load(created);
      // A failed load is forgotten, so the next request tries again (the file may have been fixed).
      created.ready.catch(() => {
        if (this.models.get(key) === created) this.models.delete(key);
      });
    }
    return m;
  }

  private async load(m: PooledModel): Promise<RuntimeModel> {
    await Promise.allSettled([...this.unloading]);
    emit(this.o.onEvent, { type: "log", level: "debug", message: `loading ${m.entry.name}` });
    // A request's own variant (NAME:q4) wins over the server's --dtype.
    // The server's --lora is for the bare base; a registered `base+adapter` brings its own adapters instead.
    // Its context then shares the base's weights with the base's own context (llama/sharedWeights.ts).
    const lora = (m.entry.adapters?.length ?? 0) > 0 ? undefined : this.o.load.lora;
    const load = { ...this.o.load, lora, dtype: m.entry.dtype ?? this.o.load.dtype, sequences: this.o.parallel };
    const model = await loadRuntimeModel(m.entry, load, { signal: this.shutdown.signal, onEvent: this.o.onEvent });
    try {
      // Resolving llama.cpp's chat template takes ~0.5 s; doing it here keeps that off the first request.
      await model.warmUp?.();
    } catch (err) {
      await model.dispose().catch(() => undefined);
      throw err;
    }
    m.loaded = model;
    emit(this.o.onEvent, { type: "log", level: "debug", message: `loaded ${m.entry.name} in ${model.loadMs} ms (${model.runtime}, context ${model.contextSize} tokens × ${countOf(this.o.parallel, "slot")}, ${countOf(model.threads, "thread")})` });
    return model;
  }

  private async acquire(m: PooledModel, model: RuntimeModel, signal: AbortSignal): Promise<GenerationSlot> {
    if (signal.aborted) throw new CancelledError();
    const free = m.free.pop();
    if (free) return free;
    if (m.created < this.o.parallel) {
      m.created++;
      try {
        return await model.openSlot();
      } catch (err) {
        m.created--;
        throw err;
      }
    }
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const i = m.waiters.indexOf(waiter);
        if (i >= 0) m.waiters.splice(i, 1);
        reject(new CancelledError());
      };
      const waiter: Waiter = {
        resolve: (s) => {
          signal.removeEventListener("abort", onAbort);
          resolve(s);
        },
        reject: (err) => {
          signal.removeEventListener("abort", onAbort);
          reject(err);
        },
      };
      signal.addEventListener("abort", onAbort, { once: true });
      m.waiters.push(waiter);
    });
  }

  private async giveBack(m: PooledModel, model: RuntimeModel, slot: GenerationSlot, clean: boolean): Promise<void> {
    let kept: GenerationSlot | undefined = slot;
    if (clean) {
      try {
        await slot.clear();
      } catch {
        // A slot that cannot even be cleared is dropped; its place is free again once disposed.
        try {
          slot.dispose();
        } catch {
          // already unusable
        }
        m.created--;
        kept = undefined;
      }
    }
    const next = m.waiters.shift();
    if (!next) {
      if (kept) m.free.push(kept);
      return;
    }
    if (kept) return next.resolve(kept);
    m.created++;
    try {
      next.resolve(await model.openSlot());
    } catch (err) {
      m.created--;
      next.reject(err);
    }
  }

  private leave(m: PooledModel): void {
    m.users--;
    if (m.users > 0 || m.pinned || this.o.idleTimeoutMs <= 0 || this.models.get(m.key) !== m) return;
    this.stopIdleTimer(m);
    m.idleTimer = setTimeout(() => {
      if (m.users > 0 || this.models.get(m.key) !== m) return;
      this.models.delete(m.key);
      const p = this.dispose(m).then(() => emit(this.o.onEvent, { type: "log", level: "debug", message: `unloaded ${m.entry.name} (idle for ${Math.round(this.o.idleTimeoutMs / 1000)} s)` }));
      this.unloading.add(p);
      void p.finally(() => this.unloading.delete(p));
    }, this.o.idleTimeoutMs);
    // An idle timer alone must not keep the process alive.
    m.idleTimer.unref();
  }

  private stopIdleTimer(m: PooledModel): void {
    if (m.idleTimer) clearTimeout(m.idleTimer);
    m.idleTimer = undefined;
  }

  private async dispose(m: PooledModel): Promise<void> {
    const model = await m.ready.catch(() => undefined);
    if (!model) return;
    await model.dispose().catch(() => undefined);
  }
}
