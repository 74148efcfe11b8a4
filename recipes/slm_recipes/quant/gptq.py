"""GPTQ (Frantar, Ashkboos, Hoefler, Alistarh 2022, "GPTQ: Accurate Post-Training Quantization for Generative
Pre-trained Transformers", arXiv:2210.17323), implemented from the paper.

For a linear layer W [out, in] with calibration inputs X [in, tokens], GPTQ minimises ‖WX − ŴX‖² one input column
at a time: with H = 2XXᵀ (averaged over tokens), a column is rounded to the grid and the rounding error, scaled
by the inverse Hessian, is pushed onto the columns not yet quantized. The paper's three changes make this fast and
stable: (1) every row uses the same column order, so the inverse-Hessian updates are shared by all rows and come
from the upper Cholesky factor U of H⁻¹ (row i of U holds the updates for column i); (2) updates are applied
lazily, in blocks of 128 columns; (3) H is dampened by λ = damp · mean(diag H). Act-order ("desc_act") quantizes
columns in order of decreasing diag(H), and g_idx maps each column to its group."""
import math

import torch

from . import grid
from ..errors import RecipeError

BLOCK = 128


class Hessian:
    """H = 2/n · Σ x xᵀ over the n calibration tokens seen so far (a running mean, so it stays well scaled)."""

    def __init__(self, columns, device):
        self.matrix = torch.zeros(columns, columns, dtype=torch.float32, device=device)
        self.tokens = 0

    def add(self, x):
        x = x.float().reshape(-1, self.matrix.shape[0])
        m = x.shape[0]
        if m == 0:
            return
        self.matrix.mul_(self.tokens / (self.tokens + m))
        self.tokens += m
        x = x * math.sqrt(2 / self.tokens)
        self.matrix.addmm_(x.t(), x)


class Prepared:
    """What GPTQ derives from H alone, shared by the linears that read the same input (q, k and v; gate and up):
    the dead columns (inputs that are always 0), the column order, and U, the upper Cholesky factor of the dampened
    H's inverse."""

    def __init__(self, hessian, damp, act_order):
        h = hessian.clone()
        diag = torch.diagonal(h)
        self.dead = diag == 0
        diag[self.dead] = 1
        self.perm = torch.argsort(torch.diagonal(h), descending=True) if act_order else None
        if self.perm is not None:
            h = h[self.perm][:, self.perm]
        torch.diagonal(h).add_(damp * torch.mean(torch.diagonal(h)))
        try:
            low = torch.linalg.cholesky(h)
            self.u = torch.linalg.cholesky(torch.cholesky_inverse(low), upper=True)
        except RuntimeError:  # torch.linalg.LinAlgError: not positive definite
            raise RecipeError(f"GPTQ: the dampened Hessian is not positive definite (damp {damp}); "
                              "try a larger damp, or more calibration data") from None


def gptq_quantize(weight, prepared, bits, group_size, sym):
    """(q int32 [out, in], scales [G, out], zeros int32 [G, out], g_idx int32 [in], dequantized weight [out, in]),
    all in the weight's original column order."""
    w = weight.float().clone()
    rows, cols = w.shape
    w[:, prepared.dead] = 0
    perm = prepared.perm
    if perm is not None:
        w = w[:, perm]
    u = prepared.u
    count = grid.groups_of(cols, group_size)
    scales = torch.zeros(count, rows, device=w.device)
    zeros = torch.zeros(count, rows, device=w.device)
    q = torch.zeros(rows, cols, dtype=torch.int32, device=w.device)
    deq = torch.zeros(rows, cols, device=w.device)
    if group_size == -1:
        scale, zero = grid.fit(w, bits, sym, min_zero=1)
        scales[0], zeros[0] = scale, zero
    for b0 in range(0, cols, BLOCK):
        b1 = min(b0 + BLOCK, cols)
        wb = w[:, b0:b1].clone()
        errs = torch.zeros_like(wb)
        ub = u[b0:b1, b0:b1]
        for i in range(b1 - b0):
            c = b0 + i
            if group_size != -1 and c % group_size == 0:
                scale, zero = grid.fit(_group_now(w, wb, errs, u, b0, b1, i, group_size), bits, sym, min_zero=1)
                scales[c // group_size], zeros[c // group_size] = scale, zero
            col = wb[:, i:i + 1]
            qc = grid.quantize(col, scale, zero, bits)
            dc = grid.dequantize(qc, scale, zero)
            q[:, c], deq[:, c] = qc[:, 0], dc[:, 0]
            err = (col - dc) / ub[i, i]
            # The rounding error of column c, carried onto the block's later columns (the paper's Eq. 3 via U).
            wb[:, i:] -= err @ ub[i:i + 1, i:]
            errs[:, i:i + 1] = err
        # The block's errors reach the columns after it at once (the lazy batch update).
        w[:, b1:] -= errs @ u[b0:b1, b1:]
    positions = torch.arange(cols, device=w.device)
    g_idx = torch.zeros(cols, dtype=torch.int64, device=w.device) if group_size == -1 else positions // group_size
    if perm is not None:
        inverse = torch.argsort(perm)
        q, deq, g_idx = q[:, inverse], deq[:, inverse], g_idx[inverse]
    return q, scales, zeros.to(torch.int32), g_idx.to(torch.int32).cpu(), deq


def _group_now(w, wb, errs, u, b0, b1, i, group_size):
    """The group starting at column b0+i as it is now: its columns inside the block are up to date in wb; those
    after the block still miss the errors of this block's columns so far, which are applied here."""
    end = min(b0 + i + group_size, w.shape[1])
    part = wb[:, i:min(b1, end) - b0]
    if end > b1:
        rest = w[:, b1:end] - errs[:, :i] @ u[b0:b0 + i, b1:end]
        part = torch.cat([part, rest], dim=1)
    return part


def output_error(weight, quantized, hessian):
    """‖WX − ŴX‖² / ‖WX‖² over the calibration tokens, from H = 2/n XXᵀ: tr(ΔW H ΔWᵀ) / tr(W H Wᵀ)."""
    w = weight.float()
    d = w - quantized
    num = float(((d @ hessian) * d).sum())
    den = float(((w @ hessian) * w).sum())
    return num / den if den > 0 else 0.0
