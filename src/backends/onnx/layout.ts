/**
 * The ONNX decoder-only layout that Optimum and transformers.js export, and the dtype vocabulary
 * transformers.js uses for its variants (`dtype` in its from_pretrained): one file per variant in onnx/.
 */
export const ONNX_DTYPES = ["fp32", "fp16", "q8", "int8", "uint8", "q4", "q4f16", "bnb4"] as const;
export type OnnxDtype = (typeof ONNX_DTYPES)[number];

/** transformers.js's file-name suffix of each dtype: onnx/model<suffix>.onnx. */
export const DTYPE_SUFFIX: Record<OnnxDtype, string> = {
  fp32: "",
  fp16: "_fp16",
  q8: "_quantized",
  int8: "_int8",
  uint8: "_uint8",
  q4: "_q4",
  q4f16: "_q4f16",
  bnb4: "_bnb4",
};

/** On a CPU: 4-bit first (smallest, fastest to read), then 8-bit, then full precision; fp16 is slow on CPUs. */
export const CPU_DTYPE_PREFERENCE: readonly OnnxDtype[] = ["q4", "q8", "fp32"];

export function isOnnxDtype(s: string): s is OnnxDtype {
  return (ONNX_DTYPES as readonly string[]).includes(s);
}

/** onnx/model_q4.onnx for ("model", "q4"); `base` is "model", or "decoder_model_merged" for older exports. */
export function variantFile(dtype: OnnxDtype, base = "model"): string {
  return `onnx/${base}${DTYPE_SUFFIX[dtype]}.onnx`;
}

/** The dtype of a file name under onnx/ ("model_q4.onnx" → q4), or undefined if it is not a variant of `base`. */
export function dtypeOfFile(fileName: string, base = "model"): OnnxDtype | undefined {
  if (!fileName.startsWith(base) || !fileName.endsWith(".onnx")) return undefined;
  const suffix = fileName.slice(base.length, -".onnx".length);
  return ONNX_DTYPES.find((d) => DTYPE_SUFFIX[d] === suffix);
}

/** The variant to load when none is asked for: the first of the CPU preference present, else any present. */
export function defaultDtype(present: readonly OnnxDtype[]): OnnxDtype | undefined {
  return CPU_DTYPE_PREFERENCE.find((d) => present.includes(d)) ?? present[0];
}
