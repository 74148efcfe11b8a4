import { existsSync, readFileSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { emit, type BackendContext } from "../../core/events.js";
import { formatBytes } from "../../core/format.js";
import { IntegrityError, NetworkError, NotFoundError, UsageError } from "../../core/errors.js";
import { withLock } from "../../core/lock.js";
import { type ModelRef, parseModelRef, registryNameFor } from "../../core/modelRef.js";
import { hubEndpoint, hubOffline, hubToken, slmPaths } from "../../core/paths.js";
import { checkGgufFile, readGgufSummary } from "../gguf/summary.js";
import { builtinEntry } from "../store/builtin.js";
import { getModel, hasModel, listModels, registerModel } from "../store/registry.js";
import type { ModelEntry, StoredFile } from "../store/types.js";
import { quantizationOf } from "../store/quantFolder.js";
import { fetchRepoSnapshot, type RepoFile, type RepoSnapshot } from "./api.js";
import { emptyFreed, unlinkUnused } from "../store/discard.js";
import { blobPath, linkSnapshot, removeEmptyRepoFolders, repoCacheDir, snapshotDir, snapshotFile, writeRef } from "../store/hfCache.js";
import { FileUsers } from "../store/references.js";
import { snapshotFromCache } from "./offline.js";
import { ensureRoomForPull } from "./preflight.js";
import { clearPin, readPin, writePin } from "../store/pins.js";
import { assertSafeRepoPath } from "./safePath.js";
import { type OnnxDtype, isOnnxDtype } from "../onnx/layout.js";
import { onnxInfoOf } from "../onnx/scan.js";
import { QUANT_TYPES } from "./quant.js";
import { type PullFormat, type Selection, onnxVariantsOf, selectGguf, selectHf, selectOnnx } from "./select.js";
import { downloadFile } from "./transfer.js";

export interface PullOptions {
  ref: string;
  format?: PullFormat;
  quant?: string;
  /** With --format onnx: the variant to take (default: the CPU rule among those the repo has). */
  dtype?: string;
  include?: string[];
  exclude?: string[];
  revision?: string;
  /** Register under this name instead of the one derived from the reference. */
  name?: string;
  /** Parallel HTTP ranges per large file. */
  connections?: number;
  /** false: download into the cache without a registry entry (a LoRA adapter's repo is not a model). */
  register?: boolean;
}

export interface PulledFile {
  repoPath: string;
  size: number;
  status: "downloaded" | "resumed" | "cached";
}

export interface PullResult {
  model: ModelEntry;
  files: PulledFile[];
  downloadedBytes: number;
  seconds: number;
}

interface Target {
  repo: string;
  revision: string;
  format?: PullFormat;
  quant?: string;
  fallbackQuant?: string;
  dtype?: OnnxDtype;
  name?: string;
  /** The catalog marks the repo gated: without a token the Hub would only refuse it. */
  gated?: boolean;
}

/** --dtype, checked: an ONNX dtype, and only with ONNX pulls. */
function dtypeFlag(o: PullOptions): OnnxDtype | undefined {
  if (o.dtype === undefined) return undefined;
  const d = o.dtype.toLowerCase();
  if (!isOnnxDtype(d)) throw new UsageError(`--dtype ${o.dtype} is not an ONNX dtype.`, { hint: "ONNX dtypes: fp32, fp16, q8, int8, uint8, q4, q4f16, bnb4." });
  if (o.format && o.format !== "onnx") throw new UsageError(`--dtype picks an ONNX variant; it does not go with --format ${o.format}.`, { hint: o.format === "gguf" ? "GGUF files are picked with --quant (or org/repo:TYPE)." : undefined });
  if (o.quant) throw new UsageError("--quant picks a GGUF file and --dtype an ONNX variant; give one.");
  return d;
}

/** org/repo:q4 is an ONNX variant when --format onnx says so, or when q4 is no GGUF quantization type. */
function hubDtype(ref: Extract<ModelRef, { kind: "hub" }>, o: PullOptions): OnnxDtype | undefined {
  if (!ref.dtype || (o.format && o.format !== "onnx")) return undefined;
  return o.format === "onnx" || !(QUANT_TYPES as readonly string[]).includes(ref.quant ?? "") ? ref.dtype : undefined;
}

function targetOf(ref: ModelRef, o: PullOptions): Target | ModelEntry {
  const dtype = dtypeFlag(o);
  switch (ref.kind) {
    case "registered": {
      const entry = getModel(ref.name)!;
      if (entry.source.type !== "hub") {
        if (entry.source.type === "builtin") return entry;
        throw new UsageError(`${ref.name} is a local model; there is nothing to pull.`);
      }
      // Another --format than the registered pull's is another pull of the same repo, under a name of its own.
      // GPTQ and AWQ folders are pulled as Hugging Face weights.
      const pulledAs = pulledFormat(entry);
      if (o.format && o.format !== pulledAs) return { repo: entry.source.repo, revision: o.revision ?? "main", format: o.format, quant: o.quant, dtype };
      // An ONNX pull again takes another variant into the same folder (`NAME:q8` or --dtype q8).
      if (pulledAs === "onnx") return { repo: entry.source.repo, revision: o.revision ?? entry.source.revision, format: "onnx", dtype: dtype ?? ref.dtype, name: entry.name };
      return { repo: entry.source.repo, revision: o.revision ?? entry.source.revision, format: pulledAs, quant: o.quant ?? entry.quant, name: entry.name };
    }
    case "catalog": {
      const e = ref.entry;
      if (e.builtin) return builtinEntry(e);
      const format = o.format ?? (dtype ? "onnx" : "gguf");
      if (format === "onnx") throw new NotFoundError(`The catalog has no ONNX repository for ${e.id}.`, { hint: "Pull an ONNX repository by its id (e.g. slm pull onnx-community/<name> --format onnx), or export one: slm export <model> --format onnx." });
      const repo = format === "hf" ? e.hf?.repo : e.gguf?.repo;
      if (!repo) throw new NotFoundError(`The catalog has no ${format.toUpperCase()} repository for ${e.id}.`);
      const quant = ref.quant ?? o.quant;
      const gated = format === "hf" ? e.hf?.gated : e.gguf?.gated;
      return { repo, revision: o.revision ?? "main", format, quant: format === "gguf" ? (quant ?? e.gguf?.defaultQuant) : undefined, name: registryNameFor({ ...ref, quant }, format), gated };
    }
    case "hub": {
      const onnx = dtype ?? hubDtype(ref, o);
      // One registry entry holds every variant pulled from an ONNX repo, named after the repo.
      if (onnx || o.format === "onnx") return { repo: ref.repo, revision: o.revision ?? "main", format: "onnx", dtype: onnx, name: ref.repo };
      const quant = ref.quant ?? o.quant;
      return { repo: ref.repo, revision: o.revision ?? "main", format: o.format ?? (quant ? "gguf" : undefined), quant, name: registryNameFor({ ...ref, quant }) };
    }
    default:
      throw new UsageError(`${ref.path} is already on this machine; use it directly (e.g. \`slm info ${ref.path}\`).`);
  }
}

function etagOf(f: RepoFile): string {
  return f.sha256 ?? f.gitOid;
}

/** Downloads a model into the HF cache (resuming and verifying) and registers it. */
export async function pull(o: PullOptions, ctx: BackendContext = {}): Promise<PullResult> {
  const started = Date.now();
  const ref = parseModelRef(o.ref, hasModel, () => listModels().map((m) => m.name), { isOnnx: (n) => getModel(n)?.format === "onnx" });
  const target = targetOf(ref, o);
  if ("lineage" in target) {
    emit(ctx.onEvent, { type: "log", level: "info", message: `${target.name} is built in; nothing to download.` });
    return { model: target, files: [], downloadedBytes: 0, seconds: 0 };
  }
  const { hubCache } = slmPaths();
  const endpoint = hubEndpoint();
  const token = hubToken();
  const offline = hubOffline();
  const repoDir = repoCacheDir(hubCache, target.repo);
  if (target.gated && !token && !offline) {
    throw new NetworkError(`${target.repo} is gated: the Hub serves it only to accounts that accepted its licence, with a token.`, {
      hint: `Accept the licence on https://huggingface.co/${target.repo}, create a read token in your Hub settings, and set it in HF_TOKEN (or run \`huggingface-cli login\`); then pull again.`,
    });
  }

  emit(ctx.onEvent, { type: "step", id: "resolve", status: "start", title: `Resolving ${target.repo}@${target.revision}` });
  const pinned = offline ? undefined : readPin(target.repo, target.revision);
  let snap: RepoSnapshot;
  if (offline) snap = snapshotFromCache(hubCache, target.repo, target.revision);
  else {
    snap = await fetchRepoSnapshot(target.repo, pinned ?? target.revision, { endpoint, token, signal: ctx.signal });
    snap.revision = target.revision;
  }
  const format = target.format ?? defaultFormat(snap.files);
  // GGUF and ONNX pulls pick their files by quant type or dtype; patterns would be ignored without a word.
  if (format !== "hf" && (o.include?.length || o.exclude?.length)) {
    throw new UsageError(`--include and --exclude choose the files of a --format hf pull; this is ${format === "onnx" ? "an ONNX" : "a GGUF"} pull.`, { hint: format === "onnx" ? "Pick the ONNX variant with --dtype." : "Pick the GGUF file with --quant (or org/repo:TYPE)." });
  }
  const sel: Selection = format === "gguf" ? selectGguf(target.repo, snap.files, target.quant, target.fallbackQuant) : format === "onnx" ? selectOnnx(target.repo, snap.files, target.dtype) : selectHf(target.repo, snap.files, o.include, o.exclude);
  for (const f of sel.files) assertSafeRepoPath(f.path, target.repo);
  const total = sel.files.reduce((a, f) => a + f.size, 0);
  emit(ctx.onEvent, {
    type: "step", id: "resolve", status: "done", title: `Resolved ${target.repo}@${snap.commit.slice(0, 10)}`,
    detail: `${sel.files.length} file(s)${sel.quant ? `, ${sel.quant}` : ""}${sel.dtype ? `, ONNX ${sel.dtype}` : ""}${pinned ? " (resuming an unfinished pull)" : ""}`,
  });

  const name = o.name ?? defaultName(target, sel);
  const existing = o.register === false ? undefined : getModel(name);
  if (existing && (existing.source.type !== "hub" || existing.source.repo !== target.repo || pulledFormat(existing) !== sel.format)) {
    throw new UsageError(`A different model is already registered as "${name}".`, { hint: "Choose another name with --name, or `slm rm` the old one first." });
  }

  if (!offline) ensureRoomForPull(target.repo, hubCache, sel.files.map((f) => ({ blob: blobPath(repoDir, etagOf(f)), size: f.size })));
  if (!offline) writePin(target.repo, target.revision, snap.commit, sel.files.map((f) => f.path));
  const connections = Math.max(1, o.connections ?? (Number(process.env.SLM_PULL_CONNECTIONS) || 4));
  const pulled: PulledFile[] = [];
  let downloadedBytes = 0;
  const linked: { link: string; etag: string }[] = [];
  for (const f of sel.files) {
    const status = await fetchOne(f, { repo: target.repo, commit: snap.commit, repoDir, endpoint, token, offline, connections }, ctx);
    if (status !== "cached") downloadedBytes += f.size;
    pulled.push({ repoPath: f.path, size: f.size, status });
    // A file the Hub calls .gguf is checked before anything points at it: a bad one is deleted, not registered.
    if (f.path.toLowerCase().endsWith(".gguf")) checkGgufBlob(f, status, { repoDir, target, linked });
    // Linked as soon as it is verified, so an interrupted pull's finished files are found (and can be
    // discarded with `slm rm`) through the pin that names them.
    linkSnapshot(repoDir, snap.commit, f.path, etagOf(f));
    linked.push({ link: snapshotFile(repoDir, snap.commit, f.path), etag: etagOf(f) });
  }
  writeRef(repoDir, target.revision, snap.commit);
  if (!offline) clearPin(target.repo, target.revision);

  let files: StoredFile[] = sel.files.map((f) => ({ path: snapshotFile(repoDir, snap.commit, f.path), repoPath: f.path, size: f.size, sha256: f.sha256, gitOid: f.gitOid || undefined }));
  // Another variant of an ONNX pull joins the variants already pulled at the same commit.
  if (sel.format === "onnx" && existing?.source.type === "hub" && existing.source.commit === snap.commit) {
    const taken = new Set(files.map((f) => f.repoPath));
    files = [...files, ...existing.files.filter((f) => !taken.has(f.repoPath) && existsSync(f.path))].sort((a, b) => (a.repoPath ?? "").localeCompare(b.repoPath ?? ""));
  }
  const entryPath = sel.entry ? snapshotFile(repoDir, snap.commit, sel.entry) : snapshotDir(repoDir, snap.commit);
  const model: ModelEntry = {
    name,
    format: sel.format,
    path: entryPath,
    files,
    source: { type: "hub", repo: target.repo, revision: target.revision, commit: snap.commit, endpoint },
    quant: sel.quant,
    size: files.reduce((a, f) => a + f.size, 0),
    lineage: [],
    createdAt: existing?.createdAt ?? new Date().toISOString(),
  };
  if (sel.format === "onnx") {
    // The variants are the entry's own files, not whatever else the shared snapshot folder holds.
    const onnx = onnxInfoOf(files.filter((f) => f.repoPath?.startsWith("onnx/")).map((f) => f.repoPath!.slice(5)))!;
    // No weights file to count: the parameters come from config.json's shape, as the ONNX runtime reports them (bench).
    const { estimateParameters } = await import("../onnx/model.js");
    Object.assign(model, { onnx, ...configFacts(entryPath, estimateParameters) });
  } else if (sel.format === "hf") {
    // A GPTQ or AWQ repository is a model of its own format, described by its quantization_config.
    const quantization = quantizationOf(entryPath);
    if (quantization) Object.assign(model, { format: quantization.method, quantization });
  } else {
    const s = await readGgufSummary(entryPath);
    Object.assign(model, { parameters: s.parameters, contextLength: s.contextLength, architecture: s.architecture, quant: model.quant ?? s.fileType });
  }
  if (o.register !== false) await registerModel(model);
  return { model, files: pulled, downloadedBytes, seconds: (Date.now() - started) / 1000 };
}

/** How a registered model was pulled: GPTQ and AWQ folders are Hugging Face weights. */
function pulledFormat(entry: ModelEntry): PullFormat {
  return entry.format === "gguf" || entry.format === "onnx" ? entry.format : "hf";
}

/** Without --format: GGUF when the repo has GGUF files, else HF weights, else an ONNX export (onnx-community repos hold only that). */
function defaultFormat(files: RepoFile[]): PullFormat {
  if (files.some((f) => f.path.toLowerCase().endsWith(".gguf"))) return "gguf";
  return !files.some((f) => f.path.endsWith(".safetensors")) && onnxVariantsOf(files) ? "onnx" : "hf";
}

/** Architecture and context length from an ONNX folder's config.json (what `slm list` and run need before loading). */
function configFacts(dir: string, parametersOf: (config: Record<string, unknown>) => number): Pick<ModelEntry, "architecture" | "contextLength" | "parameters"> {
  try {
    const c = JSON.parse(readFileSync(path.join(dir, "config.json"), "utf8")) as { architectures?: unknown; max_position_embeddings?: unknown };
    const arch = Array.isArray(c.architectures) && typeof c.architectures[0] === "string" ? c.architectures[0] : undefined;
    const ctx = typeof c.max_position_embeddings === "number" ? c.max_position_embeddings : undefined;
    const parameters = parametersOf(c as Record<string, unknown>);
    return { ...(arch ? { architecture: arch } : {}), ...(ctx ? { contextLength: ctx } : {}), ...(parameters > 0 ? { parameters: Math.round(parameters) } : {}) };
  } catch {
    return {};
  }
}

/**
 * The name a pull registers under when --name is not given: the reference's own, unless that repo is
 * registered there in the other format (GGUF and HF weights of one repo are two models).
 */
function defaultName(target: Target, sel: Selection): string {
  const name = target.name ?? target.repo;
  const there = getModel(name);
  if (!there || pulledFormat(there) === sel.format || there.source.type !== "hub" || there.source.repo !== target.repo) return name;
  return sel.format === "hf" ? `${target.repo}:hf` : sel.format === "onnx" ? `${target.repo}:onnx` : `${target.repo}:${sel.quant ?? "gguf"}`;
}

/**
 * A downloaded GGUF must read back as one (magic, header, every tensor inside the file); else exit 7,
 * with this pull undone: the bad blob (when this pull fetched it), the files it linked before that no
 * registered model uses, its pin and the folders it left empty.
 */
function checkGgufBlob(f: RepoFile, status: PulledFile["status"], p: { repoDir: string; target: Target; linked: { link: string; etag: string }[] }): void {
  const blob = blobPath(p.repoDir, etagOf(f));
  try {
    checkGgufFile(blob);
  } catch (err) {
    // The bytes are what the Hub has (the hash matched), so downloading again would not help.
    if (status !== "cached") rmSync(blob, { force: true });
    unlinkUnused(p.repoDir, p.linked, new FileUsers(listModels()), emptyFreed());
    removeEmptyRepoFolders(p.repoDir);
    clearPin(p.target.repo, p.target.revision);
    const why = (err as Error).message.replace(/^.* is not a readable GGUF file \((.*)\)\.$/s, "$1");
    throw new IntegrityError(`${f.path} in ${p.target.repo} is not a GGUF file (${why}); nothing was registered.`, {
      hint: "The repository holds a damaged or mislabelled file: pick another quantization or repository.",
      cause: err,
    });
  }
}

interface FetchContext {
  repo: string;
  commit: string;
  repoDir: string;
  endpoint: string;
  token?: string;
  offline: boolean;
  connections: number;
}

async function fetchOne(f: RepoFile, c: FetchContext, ctx: BackendContext): Promise<PulledFile["status"]> {
  const blob = blobPath(c.repoDir, etagOf(f));
  const have = () => existsSync(blob) && statSync(blob).size === f.size;
  if (have()) {
    emit(ctx.onEvent, { type: "step", id: f.path, status: "skip", title: f.path, detail: "already downloaded" });
    return "cached";
  }
  if (c.offline) throw new NotFoundError(`${f.path} is not in the cache, and HF_HUB_OFFLINE is set.`);
  return withLock(blob, async () => {
    if (have()) {
      emit(ctx.onEvent, { type: "step", id: f.path, status: "skip", title: f.path, detail: "downloaded by another slm process" });
      return "cached";
    }
    emit(ctx.onEvent, { type: "step", id: f.path, status: "start", title: f.path });
    const rate = rateMeter();
    try {
      const { resumedBytes } = await downloadFile({
        url: `${c.endpoint}/${c.repo}/resolve/${c.commit}/${f.path.split("/").map(encodeURIComponent).join("/")}`,
        dest: blob,
        size: f.size,
        expected: f.sha256 ? { algo: "sha256", hex: f.sha256 } : { algo: "git-sha1", hex: f.gitOid },
        commit: c.commit,
        repo: c.repo,
        repoPath: f.path,
        token: c.token,
        signal: ctx.signal,
        connections: c.connections,
        onProgress: (done, total) => emit(ctx.onEvent, { type: "progress", id: f.path, unit: "bytes", current: done, total, rate: rate(done) }),
      });
      emit(ctx.onEvent, { type: "step", id: f.path, status: "done", title: f.path, detail: resumedBytes > 0 ? `resumed at ${formatBytes(resumedBytes)}, verified` : "verified" });
      return resumedBytes > 0 ? "resumed" : "downloaded";
    } catch (err) {
      emit(ctx.onEvent, { type: "step", id: f.path, status: "fail", title: f.path, detail: (err as Error).message });
      throw err;
    }
  }, { onWait: () => emit(ctx.onEvent, { type: "log", level: "info", message: `Waiting for another slm process that is downloading ${f.path}…` }) });
}

/** Bytes per second over a sliding window of about two seconds. */
function rateMeter(): (done: number) => number {
  const samples: [number, number][] = [];
  return (done) => {
    const now = Date.now();
    samples.push([now, done]);
    while (samples.length > 2 && now - samples[0]![0] > 2000) samples.shift();
    const [t0, d0] = samples[0]!;
    return now > t0 ? ((done - d0) * 1000) / (now - t0) : 0;
  };
}
