import { type CatalogEntry, builtinHfPath, catalog } from "../../core/catalog.js";
import { UsageError } from "../../core/errors.js";
import { parseModelRef, registryNameFor } from "../../core/modelRef.js";
import { mergedWeightsOf } from "../quantize/weightsSource.js";
import { builtinEntry } from "../store/builtin.js";
import { hfFolderModelId, shortName } from "../store/naming.js";
import { refuseOnnx } from "../store/onnxRefusal.js";
import { quantizationOf } from "../store/quantFolder.js";
import { resolveModel } from "../store/resolve.js";
import { getModel, hasModel, listModels } from "../store/registry.js";
import type { ModelEntry } from "../store/types.js";

/**
 * What fine-tuning starts from: Hugging Face weights to train on (here, or a reference to pull), and
 * the GGUF that inference will load the adapter onto (registered, or made from the HF weights later).
 */
export interface FinetuneBase {
  /** Short, path-safe name: the first half of `<base>+<name>`. */
  name: string;
  /** How the lineage names it: a registered name, or the folder's path. */
  from: string;
  /** A local HF model folder (config.json, safetensors, tokenizer). */
  hf?: string;
  /** Otherwise: what to pull with `--format hf` to get one. */
  pull?: string;
  /** A registered GGUF of the same model, used as the base at inference. */
  gguf?: ModelEntry;
}

function catalogOf(entry: ModelEntry): CatalogEntry | undefined {
  if (entry.source.type !== "hub") return undefined;
  const repo = entry.source.repo;
  return catalog().find((c) => c.gguf?.repo === repo || c.hf?.repo === repo);
}

/** The registered GGUF pulled from a catalog entry's GGUF repository (its default quant first). */
function catalogGguf(c: CatalogEntry): ModelEntry | undefined {
  const own = getModel(c.id);
  if (own?.format === "gguf") return own;
  return listModels().find((m) => m.format === "gguf" && m.source.type === "hub" && m.source.repo === c.gguf?.repo);
}

/** HF weights of a catalog model: pulled already (registered as `<id>:hf`), or to pull. */
function catalogHf(c: CatalogEntry, gguf: ModelEntry | undefined, from: string): FinetuneBase {
  if (!c.hf) {
    throw new UsageError(`${c.id} is available as GGUF only; fine-tuning needs its weights in Hugging Face format (safetensors).`, {
      hint: "Give a Hugging Face model folder or repository of the same model instead.",
    });
  }
  const pulled = getModel(registryNameFor({ kind: "catalog", entry: c }, "hf")!);
  return { name: c.id, from, ...(pulled?.format === "hf" ? { hf: pulled.path } : { pull: c.id }), gguf };
}

/** Resolves the model reference given to `slm finetune`. Nothing is downloaded here. */
export function resolveFinetuneBase(ref: string): FinetuneBase {
  const parsed = parseModelRef(ref, hasModel, () => listModels().map((m) => m.name));
  switch (parsed.kind) {
    case "registered":
    case "hub": {
      const name = parsed.kind === "registered" ? parsed.name : registryNameFor(parsed)!;
      const entry = getModel(name);
      if (!entry) {
        // Only a hub reference can be unregistered here; with a quant it names a GGUF file.
        const repo = parsed.kind === "hub" ? parsed.repo : name;
        if (parsed.kind === "hub" && parsed.quant) throw new UsageError(`${ref} names a GGUF file; fine-tuning needs the model's Hugging Face weights.`, { hint: `Give the repository of the original weights (org/repo, without :${parsed.quant}).` });
        return { name: shortName(repo), from: repo, pull: repo };
      }
      if (entry.adapters?.length) {
        throw new UsageError(`${entry.name} is a base model with a LoRA adapter; fine-tune its base, or a model merged with --merge.`);
      }
      refuseOnnx(entry, "fine-tuning needs");
      if (entry.format === "gptq" || entry.format === "awq") throw packedBase(entry.name, entry.format);
      if (entry.format === "hf") {
        const c = catalogOf(entry);
        return { name: c ? c.id : shortName(entry.name), from: entry.name, hf: entry.path, gguf: c ? catalogGguf(c) : undefined };
      }
      // A full fine-tune's trained folder, or a `-merged` model's merged one: the weights its run kept; its
      // own GGUF is their F16 conversion. "+" separates base and fine-tune in `<base>+<name>`: the new name must not have two.
      const trained = mergedWeightsOf(entry);
      if (trained) return { name: entry.name.replaceAll("+", "-"), from: entry.name, hf: trained, gguf: entry };
      const c = catalogOf(entry);
      if (c) return catalogHf(c, entry, entry.name);
      throw new UsageError(`${entry.name} is a GGUF file only; fine-tuning needs the model's Hugging Face weights (safetensors), and slm does not know where they are.`, {
        hint: "Give the original model instead: a local HF folder, or its Hugging Face repository (slm finetune org/repo …).",
      });
    }
    case "catalog": {
      const c = parsed.entry;
      if (c.builtin) {
        // A built-in model trains on the HF weights that ship beside its GGUF; the adapter runs on that GGUF.
        const hf = builtinHfPath(c);
        if (!hf) throw new UsageError(`${c.id} is built in as a GGUF file only; fine-tuning needs Hugging Face weights (safetensors).`);
        return { name: c.id, from: c.id, hf, gguf: builtinEntry(c) };
      }
      const gguf = getModel(registryNameFor(parsed)!);
      return catalogHf(c, gguf?.format === "gguf" ? gguf : catalogGguf(c), c.id);
    }
    case "gguf-file":
      throw new UsageError(`${parsed.path} is a GGUF file; fine-tuning needs the model's Hugging Face weights (safetensors).`, {
        hint: "Give the HF model folder it was converted from, or its Hugging Face repository.",
      });
    case "hf-folder": {
      refuseOnnx(resolveModel(ref), "fine-tuning needs");
      const packed = quantizationOf(parsed.path);
      if (packed) throw packedBase(parsed.path, packed.method);
      return { name: shortName(hfFolderModelId(parsed.path)), from: parsed.path, hf: parsed.path };
    }
  }
}

/** LoRA trains on float weights; a GPTQ/AWQ checkpoint's packed ones would need a GPTQ/AWQ kernel library. */
function packedBase(shown: string, method: "gptq" | "awq"): UsageError {
  return new UsageError(`${shown} holds ${method.toUpperCase()}-packed weights; fine-tuning needs the model's unquantized Hugging Face weights.`, {
    hint: "Fine-tune the original model (its folder or Hugging Face repository), then quantize the result with slm quantize --method gptq|awq.",
  });
}
