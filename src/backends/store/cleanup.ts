import { deleteUnused, emptyFreed } from "./discard.js";
import { FileUsers } from "./references.js";
import { listModels } from "./registry.js";

/**
 * Clean-up after a failed or cancelled run, through the same reference count as `slm rm`: a work or
 * run folder loses everything except what a registered model names (a finished run's folder holds the
 * PEFT adapter and merged weights its models' lineage points at).
 */
export function removeRunFolder(dir: string): void {
  deleteUnused(dir, new FileUsers(listModels()), emptyFreed());
}

/** A `.tmp-*` work folder under $SLM_HOME/models that a quantize, convert or fine-tune did not install. */
export function removeWorkDir(dir: string): void {
  deleteUnused(dir, new FileUsers(listModels()), emptyFreed());
}
