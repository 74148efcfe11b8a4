"""AWQ's GEMM checkpoint format (the one transformers, vLLM, TGI and SGLang read for `version: "gemm"`).

For a linear with weight W [out, in], 4-bit codes q [out, in] in 0..15, group size g (in / g groups along the
input dimension), zero points z and scales s per (group, output channel):
  - `qweight` int32 [in, out/8]: row i holds q[:, i]; word j packs output channels 8j..8j+7, nibble k (bits
    4k..4k+3) holding channel 8j + ORDER[k] with ORDER = [0, 2, 4, 6, 1, 3, 5, 7] (the interleaving the GEMM
    kernels dequantize in);
  - `qzeros` int32 [in/g, out/8]: the zero points packed the same way, stored as they are (no "zero − 1");
  - `scales` float16 [in/g, out];
  - W[o, i] = (q[o, i] − z[o, i // g]) · s[o, i // g].
Words are int32: a word whose top nibble is 8 or more reads as negative."""
import torch

BITS = 4
PACK = 32 // BITS  # codes per int32 word
ORDER = (0, 2, 4, 6, 1, 3, 5, 7)  # nibble k holds output channel ORDER[k] of its block of 8


def _pack_rows(codes):
    """codes int [rows, out] in 0..15 → int32 [rows, out/8], packed along the output dimension."""
    rows, out = codes.shape
    if out % PACK:
        raise ValueError(f"AWQ GEMM packs 8 output channels per word; {out} is not a multiple of 8")
    c = codes.to(torch.int64)
    if c.numel() and (c.min() < 0 or c.max() > (1 << BITS) - 1):
        raise ValueError("AWQ codes must lie in 0..15")
    blocks = c.reshape(rows, out // PACK, PACK)
    word = torch.zeros(rows, out // PACK, dtype=torch.int64)
    for k, channel in enumerate(ORDER):
        word |= blocks[:, :, channel] << (BITS * k)
    # int64 → int32 with two's-complement wrap-around (torch's narrowing cast keeps the low 32 bits).
    return word.to(torch.int32)


def _unpack_rows(words):
    """int32 [rows, out/8] → int64 codes [rows, out]."""
    rows, n = words.shape
    w = words.to(torch.int64) & 0xFFFFFFFF
    codes = torch.empty(rows, n, PACK, dtype=torch.int64)
    for k, channel in enumerate(ORDER):
        codes[:, :, channel] = (w >> (BITS * k)) & ((1 << BITS) - 1)
    return codes.reshape(rows, n * PACK)


def pack(q, zeros, scales):
    """q [out, in], zeros and scales [out, groups] (slm's orientation, rows = output channels) → the three
    checkpoint tensors {qweight, qzeros, scales} in the GEMM layout."""
    out, inp = q.shape
    groups = zeros.shape[1]
    if zeros.shape != (out, groups) or scales.shape != (out, groups) or inp % groups:
        raise ValueError(f"shapes do not fit: q {tuple(q.shape)}, zeros {tuple(zeros.shape)}, "
                         f"scales {tuple(scales.shape)}")
    return {
        "qweight": _pack_rows(q.t()),
        "qzeros": _pack_rows(zeros.t()),
        "scales": scales.t().to(torch.float16).contiguous(),
    }


def unpack(qweight, qzeros, scales):
    """The inverse of `pack`: (q [out, in], zeros [out, groups] int64, scales [out, groups] as stored)."""
    q = _unpack_rows(qweight).t()
    zeros = _unpack_rows(qzeros).t()
    return q.contiguous(), zeros.contiguous(), scales.t().contiguous()


def dequantize(qweight, qzeros, scales, dtype=torch.float32):
    """W [out, in] = (q − zero) · scale, computed in float32 and returned in `dtype`."""
    q, zeros, s = unpack(qweight, qzeros, scales)
    inp, groups = q.shape[1], zeros.shape[1]
    if inp % groups:
        raise ValueError(f"{inp} input channels do not split into {groups} groups")
    g = inp // groups
    z = zeros.repeat_interleave(g, dim=1).to(torch.float32)
    s = s.to(torch.float32).repeat_interleave(g, dim=1)
    return ((q.to(torch.float32) - z) * s).to(dtype)


def quantization_config(group_size, zero_point=True):
    """The `quantization_config` entry of config.json that marks a folder as an AWQ GEMM checkpoint."""
    return {"quant_method": "awq", "version": "gemm", "bits": BITS, "group_size": group_size,
            "zero_point": bool(zero_point)}
