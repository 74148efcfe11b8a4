import { existsSync } from "node:fs";
import path from "node:path";
import { suggestNames } from "../../core/catalog.js";
import { NotFoundError, SlmError, UsageError } from "../../core/errors.js";
import { parseModelRef, registryNameFor } from "../../core/modelRef.js";
import { runsRoot } from "./discard.js";
import type { UnfinishedDownload } from "./downloads.js";
import type { Leftovers } from "./leftovers.js";
import { isOnnxDtype } from "../onnx/layout.js";
import { getModel, hasModel, listModels } from "./registry.js";
import type { AbandonedRun } from "./runs.js";

export type Target = { kind: "model"; name: string } | { kind: "download"; name: string; download: UnfinishedDownload } | { kind: "run"; name: string; run: AbandonedRun };

/** Resolves every name before anything is removed; unknown names all fail together (exit 3). */
export function resolveRemoval(names: string[], found: Leftovers): Target[] {
  const targets: Target[] = [];
  const missing: string[] = [];
  for (const n of names) {
    const t = resolveOne(n, found);
    if (!t) missing.push(n);
    else if (!targets.some((x) => x.kind === t.kind && x.name === t.name)) targets.push(t);
  }
  if (missing.length > 0) {
    const known = [...listModels().map((m) => m.name), ...found.downloads.map((d) => d.repo), ...found.runs.map((r) => r.name)];
    const near = missing.flatMap((m) => suggestNames(m, known).filter((s) => known.includes(s)));
    throw new NotFoundError(`Nothing to remove named ${missing.map((m) => `"${m}"`).join(", ")}: no registered model, unfinished download or abandoned fine-tune run has that name. Nothing was removed.`, {
      hint: `${near.length > 0 ? `Did you mean ${[...new Set(near)].map((s) => `"${s}"`).join(" or ")}? ` : ""}\`slm list\` shows what there is.`,
    });
  }
  return targets;
}

/**
 * `NAME:fp16` of an ONNX model names one variant, which rm does not take apart (a pulled variant's files
 * live in the shared Hub cache): said plainly, rather than "did you mean NAME", which would remove them all.
 */
function refuseVariant(ref: string): void {
  const i = ref.lastIndexOf(":");
  const entry = i > 0 ? getModel(ref.slice(0, i)) : undefined;
  if (entry?.format !== "onnx" || !isOnnxDtype(ref.slice(i + 1).toLowerCase())) return;
  throw new UsageError(`slm rm removes whole models; the ${ref.slice(i + 1).toLowerCase()} variant of ${entry.name} cannot be removed on its own. Nothing was removed.`, {
    hint: `\`slm rm ${entry.name}\` removes the model with all its variants (${entry.onnx?.dtypes.join(", ") ?? "none"}).`,
  });
}

/** A run folder is named after the model it makes (derived.ts's rule), so "." or ".." never name one. */
const RUN_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;

function resolveOne(ref: string, found: Leftovers): Target | undefined {
  if (hasModel(ref)) return { kind: "model", name: ref };
  refuseVariant(ref);
  const run = found.runs.find((r) => r.name === ref);
  if (run) return { kind: "run", name: ref, run };
  if (RUN_NAME.test(ref) && existsSync(path.join(runsRoot(), ref))) {
    throw new UsageError(`The fine-tune run ${ref} is in use: a running \`slm finetune\` holds it, or a registered model was made from it.`, { hint: "`slm list` shows the models; remove the model made from it first." });
  }
  let parsed;
  try {
    parsed = parseModelRef(ref, hasModel, () => []);
  } catch (err) {
    if (err instanceof SlmError && (err.exitCode === 2 || err.exitCode === 3)) return undefined;
    throw err;
  }
  if (parsed.kind === "gguf-file" || parsed.kind === "hf-folder") {
    throw new UsageError(`${parsed.path} is not a registered model; \`slm rm\` never deletes your own files.`);
  }
  if (parsed.kind === "catalog" && parsed.entry.builtin) throw new UsageError(`${parsed.entry.id} is built in and cannot be removed.`);
  if (parsed.kind === "registered") return { kind: "model", name: parsed.name };
  for (const name of [registryNameFor(parsed), parsed.kind === "catalog" ? registryNameFor(parsed, "hf") : undefined]) {
    if (name && hasModel(name)) return { kind: "model", name };
  }
  const repos = parsed.kind === "hub" ? [parsed.repo] : [parsed.entry.gguf?.repo, parsed.entry.hf?.repo];
  const download = found.downloads.find((d) => repos.includes(d.repo));
  if (!download) return undefined;
  if (download.active) throw new UsageError(`${download.repo} is being downloaded by a running \`slm pull\`.`, { hint: "Stop that pull first (Ctrl+C), then remove what it left." });
  return { kind: "download", name: download.repo, download };
}
