/**
 * `--lora` values: a GGUF LoRA file (used as is), a PEFT adapter folder, or the Hub repo id of a PEFT
 * adapter (downloaded into the HF cache, not registered as a model). PEFT adapters are converted once
 * into $SLM_HOME/adapters/<sha256 of the weights>/, keyed further by everything the GGUF depends on,
 * so the next run loads the converted file directly.
 */
import { createHash } from "node:crypto";
import { createReadStream, existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { NotFoundError, UsageError } from "../../core/errors.js";
import { emit, type BackendContext } from "../../core/events.js";
import { slmPaths } from "../../core/paths.js";
import type { OutType } from "../gguf/quants.js";
import { type LoraSpec, parseLoraSpec, splitLoraSpec } from "../llama/lora.js";
import { findBaseModel } from "./baseModel.js";
import { convertPeftAdapter } from "./convert.js";
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, readPeftAdapter } from "./peft.js";

export interface ResolveLoraOptions {
  /** The GGUF model the adapter will run on: its head counts, and a check that the adapter fits it. */
  baseGguf?: string;
  /** Default f32 (exact; adapters are small). */
  outtype?: OutType;
}

/** Bumped when the converter's output for the same input changes, so old cache entries are not reused. */
const CONVERTER_VERSION = 1;

const HUB_REPO = /^(?:hf:)?([A-Za-z0-9][\w.-]*\/[\w.-]+)$/;

async function sha256File(file: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest("hex");
}

/** The adapter's repo files in the HF cache; returns the snapshot folder. */
async function pullAdapter(repo: string, ctx: BackendContext): Promise<string> {
  const { pull } = await import("../hub/pull.js");
  try {
    const r = await pull({ ref: repo, format: "hf", include: [ADAPTER_CONFIG, ADAPTER_WEIGHTS], register: false }, ctx);
    return r.model.path;
  } catch (err) {
    if (err instanceof NotFoundError && /matches the --include/.test(err.message)) {
      throw new UsageError(`${repo} is not a PEFT LoRA adapter repository: it has no ${ADAPTER_CONFIG}.`, { hint: err.hint });
    }
    throw err;
  }
}

/** Converts a PEFT folder unless an identical conversion is cached; returns the GGUF path. */
export async function cachedAdapter(dir: string, name: string | undefined, ctx: BackendContext, o: ResolveLoraOptions): Promise<string> {
  const adapter = readPeftAdapter(dir);
  const base = findBaseModel({ baseGguf: o.baseGguf, baseModelName: adapter.config.baseModel }, adapter.dir);
  const outtype = o.outtype ?? "f32";
  const sha = await sha256File(adapter.weights.path);
  const key = createHash("sha256")
    .update(JSON.stringify({ v: CONVERTER_VERSION, config: readFileSync(path.join(adapter.dir, ADAPTER_CONFIG), "utf8"), arch: base.architecture ?? base.hfArchitecture, heads: base.heads, kvHeads: base.kvHeads, outtype, name: name ?? path.basename(adapter.dir) }))
    .digest("hex")
    .slice(0, 16);
  const out = path.join(slmPaths().home, "adapters", sha, `${key}-${outtype}.gguf`);
  if (existsSync(out)) {
    emit(ctx.onEvent, { type: "step", id: "convert-adapter", status: "skip", title: `LoRA adapter ${adapter.dir}`, detail: `converted before: ${out}` });
    return out;
  }
  await convertPeftAdapter({ adapterDir: adapter.dir, out, outtype, baseGguf: o.baseGguf, name }, ctx);
  return out;
}

export async function resolveLoraArg(spec: string, ctx: BackendContext = {}, o: ResolveLoraOptions = {}): Promise<LoraSpec> {
  const { target, scale } = splitLoraSpec(spec);
  const local = path.resolve(target);
  if (existsSync(local)) {
    if (!statSync(local).isDirectory()) return parseLoraSpec(spec);
    return { path: await cachedAdapter(local, undefined, ctx, o), scale };
  }
  const repo = HUB_REPO.exec(target)?.[1];
  if (!repo) {
    throw new NotFoundError(`LoRA adapter not found: ${local}`, { hint: "--lora takes a GGUF LoRA file, a PEFT adapter folder, or the Hub repo id (org/name) of a PEFT adapter." });
  }
  const dir = await pullAdapter(repo, ctx);
  return { path: await cachedAdapter(dir, repo.split("/")[1], ctx, o), scale };
}

/** Every `--lora` of a command, in order (one at a time: downloads and conversions report in turn). */
export async function resolveLoraArgs(specs: readonly string[] | undefined, ctx: BackendContext = {}, o: ResolveLoraOptions = {}): Promise<LoraSpec[]> {
  const out: LoraSpec[] = [];
  for (const s of specs ?? []) out.push(await resolveLoraArg(s, ctx, o));
  return out;
}
