import { statSync } from "node:fs";
import path from "node:path";
import { UsageError } from "../../core/errors.js";
import { readGgufSummary } from "../gguf/summary.js";
import { installDerived, modelsDir } from "../store/derived.js";
import { removeModel } from "../store/remove.js";
import type { LineageStep, ModelEntry, StoredFile } from "../store/types.js";

/**
 * The last step of a fine-tune: work folders (from derivedWorkDir()) become $SLM_HOME/models/<name>/
 * and their entries are registered. The merged model, if any, goes second; if it cannot be registered,
 * the first is removed again, so a run registers everything or nothing.
 */
export interface Registration {
  name: string;
  work: string;
  /** The GGUF LoRA adapter, inside `work`. */
  adapterFile: string;
  /** The GGUF base: inside `work` when it was converted for this model, else a registered model's file. */
  baseFile: string;
  baseEntry?: ModelEntry;
  step: LineageStep;
  merged?: { name: string; work: string; file: string; step: LineageStep };
}

/** A path inside a work folder, as it will be once that folder is models/<name>. */
function finalPath(work: string, name: string, p: string): string {
  return p.startsWith(work + path.sep) ? path.join(modelsDir(), name, path.relative(work, p)) : p;
}

async function ggufEntry(name: string, work: string, file: string, extra: string[], lineage: LineageStep[]): Promise<ModelEntry> {
  const s = await readGgufSummary(file);
  const files: StoredFile[] = [file, ...extra].map((p) => ({ path: finalPath(work, name, p), size: statSync(p).size }));
  return {
    name,
    format: "gguf",
    path: finalPath(work, name, file),
    files,
    source: { type: "derived" },
    quant: s.fileType,
    size: files.reduce((a, f) => a + f.size, 0),
    parameters: s.parameters,
    contextLength: s.contextLength,
    architecture: s.architecture,
    lineage,
    createdAt: new Date().toISOString(),
  };
}

/** A full fine-tune's GGUF (inside `work`), registered under `name` with the base's lineage after its own step. */
export async function registerWholeModel(r: { name: string; work: string; file: string; step: LineageStep; baseEntry?: ModelEntry }): Promise<ModelEntry> {
  const model = await ggufEntry(r.name, r.work, r.file, [], [r.step, ...(r.baseEntry?.lineage ?? [])]);
  await installDerived(r.work, model);
  return model;
}

export async function registerFinetune(r: Registration): Promise<{ model: ModelEntry; merged: ModelEntry | null }> {
  const adapter = await readGgufSummary(r.adapterFile);
  if (adapter.type !== "adapter") throw new UsageError(`${r.adapterFile} is not a GGUF LoRA adapter.`);
  // The base's file is listed too, so `slm rm` of the base leaves it in place while this model uses it.
  const model = await ggufEntry(r.name, r.work, r.baseFile, [r.adapterFile], [r.step, ...(r.baseEntry?.lineage ?? [])]);
  model.adapters = [{ path: finalPath(r.work, r.name, r.adapterFile), scale: 1 }];
  const m = r.merged;
  const merged = m ? await ggufEntry(m.name, m.work, m.file, [], [m.step, ...model.lineage]) : null;
  await installDerived(r.work, model);
  if (m && merged) {
    try {
      await installDerived(m.work, merged);
    } catch (err) {
      await removeModel(r.name).catch(() => undefined);
      throw err;
    }
  }
  return { model, merged };
}
