"""Round-to-nearest on GPTQ's grid (no error feedback): the baseline GPTQ is measured against, written in the same
checkpoint format."""
import torch

from . import grid


def rtn_quantize(weight, bits, group_size, sym):
    """(q int32 [out, in], scales [G, out], zeros int32 [G, out], g_idx int32 [in], dequantized weight [out, in])."""
    w = weight.float()
    q, scales, zeros = grid.quantize_groups(w, bits, group_size, sym, min_zero=1)
    cols = w.shape[1]
    g_idx = torch.zeros(cols, dtype=torch.int32) if group_size == -1 else \
        (torch.arange(cols, dtype=torch.int32) // group_size)
    g = g_idx.to(w.device, torch.int64)
    deq = scales[g].t() * (q - zeros[g].t()).float()
    return q, scales, zeros, g_idx, deq
