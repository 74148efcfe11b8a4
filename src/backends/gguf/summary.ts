import { statSync } from "node:fs";
import { SlmError } from "../../core/errors.js";
import { tensorBytes } from "./ggmlTypes.js";

/** The facts about a GGUF file that the registry and `slm info` show, read from its header only. */
export interface GgufSummary {
  architecture: string;
  name?: string;
  parameters: number;
  contextLength?: number;
  embeddingLength?: number;
  blockCount?: number;
  fileType?: string;
  quantizationVersion?: number;
  hasChatTemplate: boolean;
  chatTemplate?: string;
  tokenizer?: string;
  vocabSize?: number;
  tensorCount: number;
  splitCount: number;
  ggufVersion: number;
}

/**
 * Reads the header with node-llama-cpp's GGUF reader (imported lazily: it costs ~0.6 s). Split models are
 * read across all their parts. A file that is not GGUF, or is truncated, becomes a clear SlmError.
 */
export async function readGgufSummary(file: string): Promise<GgufSummary> {
  const { readGgufFileInfo, GgufFileType } = await import("node-llama-cpp");
  let info: Awaited<ReturnType<typeof readGgufFileInfo>>;
  try {
    info = await readGgufFileInfo(file, { readTensorInfo: true, logWarnings: false });
  } catch (err) {
    throw new SlmError(`${file} is not a readable GGUF file (${(err as Error).message}).`, {
      hint: "It may be truncated or not a GGUF model; pull it again or check the path.",
    });
  }
  assertComplete(file, info.fullTensorInfo ?? info.tensorInfo ?? []);
  const meta = info.metadata as unknown as Record<string, Record<string, unknown> | undefined>;
  const general = (meta.general ?? {}) as Record<string, unknown>;
  const arch = String(general.architecture ?? "unknown");
  const archMeta = (info.architectureMetadata ?? {}) as Record<string, unknown>;
  const tokenizer = (meta.tokenizer ?? {}) as Record<string, unknown>;
  const ggml = (tokenizer.ggml ?? {}) as Record<string, unknown>;
  const tensors = info.fullTensorInfo ?? info.tensorInfo ?? [];
  const parameters = tensors.reduce((sum, t) => sum + t.dimensions.reduce((p: number, d) => p * Number(d), 1), 0);
  const fileTypeNum = typeof general.file_type === "number" ? general.file_type : undefined;
  const fileType = fileTypeNum === undefined ? undefined : (GgufFileType as unknown as Record<number, string>)[fileTypeNum]?.replace(/^MOSTLY_/, "").replace(/^ALL_/, "") ?? String(fileTypeNum);
  const template = typeof tokenizer.chat_template === "string" ? tokenizer.chat_template : undefined;
  const tokens = ggml.tokens;
  return {
    architecture: arch,
    name: typeof general.name === "string" ? general.name : undefined,
    parameters,
    contextLength: num(archMeta.context_length),
    embeddingLength: num(archMeta.embedding_length),
    blockCount: num(archMeta.block_count),
    fileType,
    quantizationVersion: num(general.quantization_version),
    hasChatTemplate: template !== undefined,
    chatTemplate: template,
    tokenizer: typeof ggml.model === "string" ? ggml.model : undefined,
    vocabSize: Array.isArray(tokens) ? tokens.length : num(archMeta.vocab_size),
    tensorCount: Number(info.totalTensorCount ?? info.tensorCount),
    splitCount: info.splicedParts ?? 1,
    ggufVersion: info.version,
  };
}

function num(v: unknown): number | undefined {
  return typeof v === "number" ? v : typeof v === "bigint" ? Number(v) : undefined;
}

interface TensorPlace {
  name: string;
  dimensions: readonly (number | bigint)[];
  ggmlType: number;
  fileOffset: number | bigint;
  filePart?: number;
}

/** The GGUF reader reads past the end of a short file without complaint; compare each tensor's end with its file's size. */
function assertComplete(file: string, tensors: readonly TensorPlace[]): void {
  const sizes = new Map<number, number>();
  const partSize = (part: number): number => {
    if (!sizes.has(part)) {
      const m = /-(\d{5})-of-(\d{5})\.gguf$/i.exec(file);
      const p = m && part > 1 ? file.replace(/-(\d{5})-of-(\d{5})\.gguf$/i, `-${String(part).padStart(5, "0")}-of-${m[2]}.gguf`) : file;
      sizes.set(part, statSync(p).size);
    }
    return sizes.get(part)!;
  };
  for (const t of tensors) {
    const end = Number(t.fileOffset) + (tensorBytes(t.ggmlType, t.dimensions) ?? 1);
    const size = partSize(t.filePart ?? 1);
    if (end > size) {
      throw new SlmError(`${file} is not a readable GGUF file: it is truncated (tensor ${t.name} ends at byte ${end}, the file has ${size}).`, {
        hint: "Pull or copy it again; an interrupted download or copy leaves a short file.",
      });
    }
  }
}
