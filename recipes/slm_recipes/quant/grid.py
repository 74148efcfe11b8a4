"""The uniform min/max grid shared by GPTQ, round-to-nearest and AWQ: per row of a weight group, a scale and an
integer zero point so that w ≈ scale · (q − zero) with q in [0, 2^bits − 1].

Scales are rounded to float16 when fitted, because checkpoints store them as float16: the values the algorithms
work with (GPTQ's error feedback, the errors they report) are then exactly the values a reader dequantizes."""
import torch

FP16_MAX = 65504.0
# The smallest scale kept: a group of zeros still gets a positive scale that float16 can hold (it rounds to a
# float16 subnormal, not to 0, which would divide by zero).
MIN_SCALE = 1e-6


def maxq(bits):
    return (1 << bits) - 1


def fit(w, bits, sym, min_zero=0):
    """Scale and zero [rows] (float32; the zero holds an integer) for the rows of w [rows, cols].

    sym: zero fixed at the grid's middle (2^(bits−1)), scale from the largest magnitude. Otherwise the grid spans
    [min(w, 0), max(w, 0)]. min_zero=1 is for the classic GPTQ checkpoint format, which stores zero − 1 in `bits`
    bits and so cannot hold a zero of 0 (−1 would wrap to 2^bits − 1 and be read back as 2^bits): a row that would
    need zero 0 gets zero 1 and a scale that still reaches its maximum."""
    top = maxq(bits)
    w = w.float()
    xmin = w.min(dim=1).values.clamp(max=0)
    xmax = w.max(dim=1).values.clamp(min=0)
    if sym:
        amax = torch.maximum(-xmin, xmax)
        scale = _fp16(2 * amax / top)
        zero = torch.full_like(scale, float((top + 1) // 2))
        return scale, zero
    scale = _fp16((xmax - xmin) / top)
    zero = torch.round(-xmin / scale)
    if min_zero > 0:
        low = zero < min_zero
        if low.any():
            scale = torch.where(low, _fp16(xmax / (top - min_zero)), scale)
            zero = torch.where(low, torch.full_like(zero, float(min_zero)), zero)
    return scale, zero.clamp(min_zero, top)


def _fp16(scale):
    return scale.clamp(MIN_SCALE, FP16_MAX).half().float()


def quantize(w, scale, zero, bits):
    """Integer levels (int32) of w [rows, cols] with per-row scale and zero [rows] (or [rows, 1])."""
    scale, zero = _col(scale), _col(zero)
    return torch.clamp(torch.round(w.float() / scale) + zero, 0, maxq(bits)).to(torch.int32)


def dequantize(q, scale, zero):
    """scale · (q − zero) in float32, the same arithmetic as the checkpoint readers."""
    return _col(scale) * (q - _col(zero).to(torch.int32)).float()


def _col(v):
    return v.unsqueeze(1) if v.dim() == 1 else v


def groups_of(columns, group_size):
    return 1 if group_size == -1 else -(-columns // group_size)


def quantize_groups(w, bits, group_size, sym, min_zero=0):
    """Round-to-nearest of w [out, in] in consecutive groups of `group_size` input columns (-1: one group).
    Returns q int32 [out, in], scales float32 [groups, out], zeros int32 [groups, out]."""
    out, cols = w.shape
    size = cols if group_size == -1 else group_size
    q = torch.empty(out, cols, dtype=torch.int32, device=w.device)
    scales, zeros = [], []
    for start in range(0, cols, size):
        part = w[:, start:start + size]
        scale, zero = fit(part, bits, sym, min_zero)
        q[:, start:start + size] = quantize(part, scale, zero, bits)
        scales.append(scale)
        zeros.append(zero)
    return q, torch.stack(scales), torch.stack(zeros).to(torch.int32)
