/**
 * The llama family's side of convert_lora_to_gguf.py: HF weight names → GGUF names, shapes, and the
 * row permutation llama.cpp's converter applies to q_proj/k_proj weights (HF stores rotary halves
 * apart, GGUF interleaves them). For a LoRA pair that permutation moves lora_B's rows only, as the
 * script's LoraTorchTensor does: permute(B·A) = permute(B)·A.
 */
import { UsageError } from "../../core/errors.js";
import type { BaseModelInfo } from "./baseModel.js";
import type { PeftAdapter } from "./peft.js";
import { readTensorF32, type SafetensorsTensor } from "./safetensors.js";

export interface PlannedTensor {
  /** GGUF tensor name, e.g. blk.0.attn_q.weight.lora_a. */
  name: string;
  /** ggml order (numpy shape reversed). */
  dims: number[];
  /** Layer norms stay F32 whatever the output type. */
  keepF32: boolean;
  values: () => Float32Array;
}

const LAYER: Record<string, string> = {
  "self_attn.q_proj": "attn_q",
  "self_attn.k_proj": "attn_k",
  "self_attn.v_proj": "attn_v",
  "self_attn.o_proj": "attn_output",
  "mlp.gate_proj": "ffn_gate",
  "mlp.up_proj": "ffn_up",
  "mlp.down_proj": "ffn_down",
  input_layernorm: "attn_norm",
  post_attention_layernorm: "ffn_norm",
};
const GLOBAL: Record<string, string> = { "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight", "model.embed_tokens.weight": "token_embd.weight" };

/** The GGUF name of an HF llama weight, or undefined (with the script's name clean-ups applied first). */
export function llamaTensorName(hfName: string, blocks?: number): string | undefined {
  const name = hfName.replaceAll("language_model.", "").replaceAll("text_model.", "");
  const m = /^model\.layers\.(\d+)\.(.+)\.weight$/.exec(name);
  if (!m) return GLOBAL[name];
  const block = Number(m[1]);
  const part = LAYER[m[2]!];
  if (!part || (blocks !== undefined && block >= blocks)) return undefined;
  return `blk.${block}.${part}.weight`;
}

/**
 * LlamaModel.permute on the rows of a (rows × cols) matrix: rows split into `heads` groups of two
 * halves; row h·2k + a·k + j moves to h·2k + 2j + a.
 */
export function permuteRows(data: Float32Array, rows: number, cols: number, heads: number): Float32Array {
  const half = rows / heads / 2;
  const out = new Float32Array(data.length);
  for (let h = 0; h < heads; h++) {
    for (let a = 0; a < 2; a++) {
      for (let j = 0; j < half; j++) {
        const from = (h * 2 * half + a * half + j) * cols;
        const to = (h * 2 * half + 2 * j + a) * cols;
        out.set(data.subarray(from, from + cols), to);
      }
    }
  }
  return out;
}

function shape2(dir: string, t: SafetensorsTensor): [number, number] {
  if (t.shape.length !== 2) throw new UsageError(`${dir}: ${t.name} has shape [${t.shape.join(", ")}], a LoRA matrix must be 2-D.`);
  return t.shape as [number, number];
}

function checkBase(a: PeftAdapter, base: BaseModelInfo, gguf: string, rows: number, cols: number): void {
  if (!base.tensors) return;
  const dims = base.tensors.get(gguf);
  if (!dims) throw new UsageError(`${a.dir} adapts ${gguf}, which ${base.source} does not have: the adapter is for another model.`);
  if (dims[0] !== cols || dims[1] !== rows) {
    throw new UsageError(`${a.dir} adapts ${gguf} as ${rows}×${cols}, but in ${base.source} it is ${dims[1]}×${dims[0]}: the adapter is for another model.`);
  }
}

/** The tensors to write, in the script's order: kept norms first, then each pair's lora_a and lora_b. */
export function planLlama(a: PeftAdapter, base: BaseModelInfo): PlannedTensor[] {
  if (base.heads === undefined || base.kvHeads === undefined) throw new UsageError(`${base.source} does not give the base model's attention head counts (num_attention_heads / head_count), which llama adapters need.`);
  const { heads: qHeads, kvHeads } = base;
  const unmapped = (hf: string) => new UsageError(`${a.dir}: ${hf} has no llama GGUF counterpart${base.blocks !== undefined ? ` (the base has ${base.blocks} layers)` : ""}.`, { hint: "Is the adapter for this base model?" });
  const out: PlannedTensor[] = [];
  for (const n of a.norms) {
    const gguf = llamaTensorName(n.base, base.blocks);
    if (!gguf || !gguf.endsWith("_norm.weight")) throw unmapped(n.base);
    out.push({ name: gguf, dims: [...n.tensor.shape].reverse(), keepF32: true, values: () => readTensorF32(a.weights, n.tensor) });
  }
  for (const p of a.pairs) {
    const gguf = llamaTensorName(p.base, base.blocks);
    if (!gguf) throw unmapped(p.base);
    if (gguf === "token_embd.weight") throw new UsageError(`${a.dir}: a LoRA on the token embeddings is not supported.`, { hint: "Merge the adapter into the base model instead." });
    if (gguf === "output.weight" && base.tiedEmbeddings) throw new UsageError(`${a.dir} has a LoRA on lm_head, but the base model ties lm_head to its embeddings, so there is no output weight to adapt.`);
    const [rank, cols] = shape2(a.dir, p.a);
    const [rows, rankB] = shape2(a.dir, p.b);
    if (rank !== rankB) throw new UsageError(`${a.dir}: ${p.base} has lora_A of rank ${rank} and lora_B of rank ${rankB}.`);
    checkBase(a, base, gguf, rows, cols);
    const heads = gguf.endsWith(".attn_q.weight") ? qHeads : gguf.endsWith(".attn_k.weight") ? kvHeads : undefined;
    if (heads !== undefined && rows % (heads * 2) !== 0) {
      throw new UsageError(`${a.dir}: ${p.base} has ${rows} rows, which do not split into ${heads} heads of two rotary halves: the base model's head counts (${base.source}) do not fit this adapter.`);
    }
    const b = p.b;
    out.push(
      { name: `${gguf}.lora_a`, dims: [cols, rank], keepF32: false, values: () => readTensorF32(a.weights, p.a) },
      { name: `${gguf}.lora_b`, dims: [rank, rows], keepF32: false, values: () => (heads ? permuteRows(readTensorF32(a.weights, b), rows, rank, heads) : readTensorF32(a.weights, b)) },
    );
  }
  return out;
}
