import { existsSync, realpathSync, statSync } from "node:fs";
import path from "node:path";
import { nearestNames } from "../../core/catalog.js";
import { NotFoundError, type SlmError, UsageError } from "../../core/errors.js";
import { currentConversion } from "../convert/runnable.js";
import { splitPartPaths } from "../gguf/summary.js";
import { looksLikePath } from "../../core/modelRef.js";
import { builtinEntries } from "../store/builtin.js";
import { getModel, hasModel, listModels } from "../store/registry.js";
import { resolveModel } from "../store/resolve.js";
import type { ModelEntry } from "../store/types.js";
import { HttpError } from "./httpError.js";

/** A model a request may use, and the id the server shows for it (never a filesystem path). */
export interface ServedModel {
  id: string;
  entry: ModelEntry;
}

/**
 * The models a server's clients may name: those it was started with, the registered ones and the
 * built-in ones. A path is honoured only under the operator's `--allow-paths` folder (after symlinks
 * are resolved), and every refusal is the same answer whether or not a file is there, so a client can
 * neither load an arbitrary file nor learn which files exist.
 */
export class ServedModels {
  private readonly started = new Map<string, ServedModel>();
  private readonly allowDir?: string;

  /** `allowPaths`: the folder requests may load .gguf files from (checked here: it must exist). */
  constructor(allowPaths?: string) {
    if (allowPaths === undefined) return;
    let real: string;
    try {
      real = realpathSync(allowPaths);
    } catch {
      throw new UsageError(`--allow-paths ${allowPaths}: no such folder.`);
    }
    if (!statSync(real).isDirectory()) throw new UsageError(`--allow-paths ${allowPaths} is not a folder.`);
    this.allowDir = real;
  }

  /**
   * A model the operator named on the command line (any reference, paths included). Clients ask for it
   * by that reference or by its name; a local file is shown by its file name only.
   */
  addStarted(ref: string, entry: ModelEntry): ServedModel {
    const served = { id: entry.name, entry };
    this.started.set(ref, served);
    if (!this.started.has(entry.name)) this.started.set(entry.name, served);
    return served;
  }

  /** The model a request names; a 404 model_not_found otherwise. */
  resolve(ref: string): ServedModel {
    const name = ref.trim();
    const started = this.started.get(name);
    if (started) return started;
    if (hasModel(name)) return { id: name, entry: this.runnable(ref, getModel(name)!) };
    if (looksLikePath(name)) return this.byPath(ref, name);
    try {
      const entry = resolveModel(name, { files: false });
      return { id: name, entry: this.runnable(ref, entry) };
    } catch (err) {
      if (err instanceof HttpError) throw err;
      if (err instanceof NotFoundError || err instanceof UsageError) throw this.notServed(ref, this.suggest(name));
      throw err;
    }
  }

  /** Every name a client may use without a path, for /v1/models and "did you mean". */
  names(): string[] {
    const named = [...builtinEntries(), ...listModels()].filter((e) => (e.format === "gguf" || e.format === "onnx") && loadable(e)).map((e) => e.name);
    return [...new Set([...[...this.started.values()].map((s) => s.id), ...named])];
  }

  /**
   * GGUF and ONNX models are served as they are; a registered Hugging Face, GPTQ or AWQ model as the GGUF
   * converted from it earlier. A request never starts a conversion (minutes of work, with no one to show
   * progress to).
   */
  private runnable(ref: string, entry: ModelEntry): ModelEntry {
    if (entry.format === "gguf" || entry.format === "onnx") return entry;
    let converted: ModelEntry | undefined;
    try {
      converted = currentConversion(entry);
    } catch (err) {
      // The folder changed since its conversion: the old GGUF is not served as if it were the model.
      throw new HttpError(409, `The model "${shown(ref)}" changed since it was converted to GGUF. ${(err as SlmError).hint ?? ""}`.trim(), { param: "model", code: "model_not_converted" });
    }
    if (converted) return converted;
    throw new HttpError(409, `The model "${shown(ref)}" is in ${entry.format.toUpperCase()} format and has not been converted to GGUF yet; the server does not convert on a request. Name it when starting the server (slm serve ${entry.name}) to convert it once, or run \`slm convert ${entry.name}\`.`, { param: "model", code: "model_not_converted" });
  }

  private byPath(ref: string, name: string): ServedModel {
    const dir = this.allowDir;
    if (!dir) throw this.notServed(ref, "Loading models by path is not enabled on this server; GET /v1/models lists the models it serves.");
    let real: string;
    let size: number;
    try {
      // Relative to the allowed folder, not to wherever the server was started.
      real = realpathSync(path.resolve(dir, name));
      const inside = (p: string) => p.startsWith(dir.endsWith(path.sep) ? dir : dir + path.sep) && statSync(p).isFile();
      if (!inside(real) || !real.toLowerCase().endsWith(".gguf")) throw new Error("outside");
      // llama.cpp opens a split model's other parts by name beside the first: a part that is a symlink
      // out of the folder would be read as well.
      if (!splitPartPaths(real).every((p) => inside(realpathSync(p)))) throw new Error("outside");
      size = statSync(real).size;
    } catch {
      // Missing, outside the folder (by .. or a symlink), not a .gguf file: one answer for all.
      throw this.notServed(ref, "Models by path must be .gguf files inside the folder the server allows.");
    }
    const id = path.relative(dir, real);
    return { id, entry: { name: id, format: "gguf", path: real, files: [{ path: real, size }], source: { type: "local" }, size, lineage: [], createdAt: new Date().toISOString() } };
  }

  private suggest(name: string): string {
    const near = nearestNames(name, this.names());
    return near.length > 0 ? `Did you mean ${near.map((n) => `"${n}"`).join(" or ")}? GET /v1/models lists the models it serves.` : "GET /v1/models lists the models it serves.";
  }

  private notServed(ref: string, hint: string): HttpError {
    return new HttpError(404, `The model "${shown(ref)}" is not served here. ${hint}`, { param: "model", code: "model_not_found" });
  }
}

/** A fine-tune (`base+adapter`) is offered only while its base's file and its adapters are all there. */
function loadable(e: ModelEntry): boolean {
  return !e.adapters?.length || [e.path, ...e.adapters.map((a) => a.path)].every((p) => existsSync(p));
}

function shown(ref: string): string {
  return ref.length > 200 ? `${ref.slice(0, 200)}…` : ref;
}
