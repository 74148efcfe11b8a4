"""The GPTQ checkpoint format (classic "gptq" checkpoint_format), packing and unpacking.

Per quantized linear of weight [out, in], with G groups:
  qweight int32 [in·bits/32, out]  32/bits levels per word, packed along the input dimension: word (r, c) holds the
                                   levels of inputs r·(32/bits) … r·(32/bits)+32/bits−1 of output c, the first in
                                   the lowest bits;
  qzeros  int32 [G, out·bits/32]   the zero points minus one, packed the same way along the output dimension;
  scales  fp16  [G, out];
  g_idx   int32 [in]               the group of each input column (not monotonic under act-order).
Dequantized: W[o, i] = scales[g_idx[i], o] · (q[i, o] − (qzeros'[g_idx[i], o] + 1)), in float32.
2, 4 and 8 bits divide 32; 3-bit (words straddling values) is refused by the config validator."""
import torch

from ..errors import RecipeError

_SUPPORTED = (2, 4, 8)


def _per_word(bits):
    if bits not in _SUPPORTED:
        raise RecipeError(f"GPTQ packing supports {', '.join(map(str, _SUPPORTED))} bits, not {bits}")
    return 32 // bits


def _as_int32(words):
    """int64 words in [0, 2^32) → int32 with the same bits (two's complement)."""
    return torch.where(words >= 1 << 31, words - (1 << 32), words).to(torch.int32)


def pack_rows(levels, bits):
    """levels [rows, cols] in [0, 2^bits) → int32 [rows·bits/32, cols], packed along the rows."""
    per = _per_word(bits)
    rows, cols = levels.shape
    if rows % per:
        raise RecipeError(f"cannot pack {rows} rows at {bits} bits: not a multiple of {per}")
    v = levels.to(torch.int64).cpu()
    if v.min() < 0 or v.max() >= 1 << bits:
        raise RecipeError(f"levels outside [0, {(1 << bits) - 1}] cannot be packed at {bits} bits")
    shifts = (torch.arange(per, dtype=torch.int64) * bits).view(1, per, 1)
    return _as_int32((v.view(rows // per, per, cols) << shifts).sum(dim=1))


def unpack_rows(words, bits):
    """int32 [rows·bits/32, cols] → int32 levels [rows, cols]."""
    per = _per_word(bits)
    w = words.to(torch.int64) & 0xFFFFFFFF
    shifts = (torch.arange(per, dtype=torch.int64) * bits).view(1, per, 1)
    v = (w.unsqueeze(1) >> shifts) & ((1 << bits) - 1)
    return v.reshape(w.shape[0] * per, w.shape[1]).to(torch.int32)


def pack_cols(levels, bits):
    """levels [rows, cols] → int32 [rows, cols·bits/32], packed along the columns."""
    return pack_rows(levels.t(), bits).t().contiguous()


def unpack_cols(words, bits):
    return unpack_rows(words.t(), bits).t().contiguous()


def pack(q, scales, zeros, g_idx, bits):
    """One linear's tensors in the checkpoint format. q: levels [out, in]; scales float [G, out] (float16 values);
    zeros: integer zero points [G, out], each in [1, 2^bits − 1] (the classic format stores zero − 1);
    g_idx [in]."""
    zeros = zeros.to(torch.int64)
    if zeros.min() < 1:
        raise RecipeError("the classic GPTQ format cannot store a zero point of 0")
    return {
        "qweight": pack_rows(q.t(), bits),
        "qzeros": pack_cols(zeros - 1, bits),
        "scales": scales.to(torch.float16).cpu().contiguous(),
        "g_idx": g_idx.to(torch.int32).cpu().contiguous(),
    }


def unpack(tensors, bits, checkpoint_format="gptq"):
    """(q [out, in], zeros [G, out], scales fp16 [G, out], g_idx [in]) from a linear's checkpoint tensors; zeros
    as the format means them (stored + 1 for "gptq", as stored for "gptq_v2")."""
    q = unpack_rows(tensors["qweight"], bits).t().contiguous()
    zeros = unpack_cols(tensors["qzeros"], bits)
    if checkpoint_format == "gptq":
        zeros = zeros + 1
    return q, zeros, tensors["scales"], tensors["g_idx"].to(torch.int64)


def dequantize(tensors, bits, checkpoint_format="gptq"):
    """The float32 weight [out, in] = scales[g_idx] · (q − zero[g_idx])."""
    q, zeros, scales, g_idx = unpack(tensors, bits, checkpoint_format)
    w = scales.float()[g_idx] * (q.t() - zeros[g_idx]).float()
    return w.t().contiguous()
