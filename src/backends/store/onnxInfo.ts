import { statSync } from "node:fs";
import path from "node:path";
import { type OnnxDtype, defaultDtype, variantFile } from "../onnx/layout.js";
import { type OnnxHeader, type OnnxValueInfo, readOnnxHeader } from "../onnx/proto.js";
import { externalDataFiles, scanOnnxFolder } from "../onnx/scan.js";
import type { OnnxFolderInfo } from "./types.js";

/** What `slm info` shows about an ONNX folder: each variant's files and header, read now from disk. */
export interface OnnxSummary {
  base: string;
  /** The variant run/chat/serve load when none is asked for (the CPU rule: q4, q8, fp32). */
  defaultDtype?: OnnxDtype;
  variants: OnnxVariant[];
  /** The graph's inputs and outputs (of the variant asked for, else the default one). */
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
}

export interface OnnxVariant {
  dtype: OnnxDtype;
  /** Relative to the folder: onnx/model_q4.onnx. */
  file: string;
  size: number;
  /** External-data files beside it (relative to the folder), with their sizes. */
  externalData: { file: string; size: number }[];
  opset?: number;
  /** Other operator sets it needs, e.g. com.microsoft 1 for MatMulNBits (4-bit). */
  extraOpsets: { domain: string; version: number }[];
  irVersion?: number;
  producer?: string;
  nodes?: number;
  /** Why the header could not be read (a truncated or foreign file), instead of the fields above. */
  error?: string;
}

const sizeOf = (p: string) => {
  try {
    return statSync(p).size;
  } catch {
    return 0;
  }
};

export function summariseOnnxFolder(dir: string, known: OnnxFolderInfo | undefined, asked?: OnnxDtype): OnnxSummary {
  const info = scanOnnxFolder(dir) ?? known ?? { dtypes: [], base: "model" };
  const headers = new Map<OnnxDtype, OnnxHeader>();
  const variants = info.dtypes.map((dtype): OnnxVariant => {
    const file = variantFile(dtype, info.base);
    // Files an external-data graph names, and any beside it by the naming convention.
    const v: OnnxVariant = { dtype, file, size: sizeOf(path.join(dir, file)), externalData: [], extraOpsets: [] };
    let named: string[] = [];
    try {
      const h = readOnnxHeader(path.join(dir, file));
      headers.set(dtype, h);
      named = h.externalData.map((f) => path.posix.join("onnx", f));
      Object.assign(v, { opset: h.opset, extraOpsets: h.opsets.filter((o) => o.domain !== "" && o.domain !== "ai.onnx"), irVersion: h.irVersion, producer: h.producer, nodes: h.nodes });
    } catch (err) {
      v.error = (err as Error).message;
    }
    v.externalData = [...new Set([...named, ...externalDataFiles(dir, dtype, info.base)])].sort().map((f) => ({ file: f, size: sizeOf(path.join(dir, f)) }));
    return v;
  });
  const def = defaultDtype(info.dtypes);
  const shown = headers.get(asked ?? def ?? info.dtypes[0]!) ?? [...headers.values()][0];
  return { base: info.base, defaultDtype: def, variants, inputs: shown?.inputs ?? [], outputs: shown?.outputs ?? [] };
}
