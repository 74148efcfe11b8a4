import { deleteUnused, emptyFreed } from "./discard.js";
import { FileUsers } from "./references.js";
import { listModels } from "./registry.js";

/**
 * Clean-up after a failed or cancelled quantize, convert or fine-tune, through the same reference count
 * as `slm rm`: a work folder (`$SLM_HOME/models/.tmp-*`) or run folder (`$SLM_HOME/runs/<name>`) loses
 * everything except what a registered model names (a finished run's folder holds the PEFT adapter and
 * merged weights its models' lineage points at).
 */
export function removeUnused(dir: string): void {
  deleteUnused(dir, new FileUsers(listModels()), emptyFreed());
}
