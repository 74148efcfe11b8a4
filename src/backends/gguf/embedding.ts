import { findCatalogEntry } from "../../core/catalog.js";
import { UsageError } from "../../core/errors.js";
import type { ModelEntry } from "../store/types.js";
import { readGgufHeader } from "./reader.js";

/** Encoder architectures in llama.cpp that only embed: they have no causal LM head to generate with. */
const ENCODERS = new Set(["bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "modern-bert", "neo-bert", "t5encoder"]);

/**
 * Whether a model turns text into vectors rather than generating text: the catalog says so, or the GGUF
 * does (an encoder architecture, or a `<arch>.pooling_type` key, which llama.cpp's converter writes only
 * for embedding models, decoder-based ones such as Qwen3-Embedding included).
 */
export function isEmbeddingModel(entry: ModelEntry): boolean {
  if (findCatalogEntry(entry.name.replace(/:[A-Za-z0-9_]+$/, ""))?.kind === "embedding") return true;
  if (entry.format !== "gguf") return false;
  const meta = readGgufHeader(entry.path, { arrayLimit: 0 }).metadata;
  const arch = meta.get("general.architecture");
  return typeof arch === "string" && (ENCODERS.has(arch) || meta.has(`${arch}.pooling_type`));
}

/** `slm run` and `slm chat` generate text: an embedding model is refused with what to do instead. */
export function assertGenerative(entry: ModelEntry, verb: "run" | "chat"): void {
  if (!isEmbeddingModel(entry)) return;
  throw new UsageError(`${entry.name} is an embedding model: it turns text into vectors and cannot ${verb === "chat" ? "chat" : "generate text"}.`, {
    hint: `Serve it for /v1/embeddings: \`slm serve ${entry.name}\`, then POST {"model":"${entry.name}","input":"…"} to http://127.0.0.1:8080/v1/embeddings.`,
  });
}
