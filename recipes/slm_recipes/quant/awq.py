"""AWQ (Lin et al. 2023, "Activation-aware Weight Quantization"), on torch alone.

For each scaling group of a decoder block (architectures.py: a previous op feeding a set of linears):
  1. statistics of the group's input X over the calibration tokens: mean |x| per input channel, and the Gram
     matrix H = XᵀX, so that the output error of any weight change D is ‖X Dᵀ‖² = Σ (D H) ⊙ D without keeping X;
  2. the scale search: s = mean|x|^α (normalised so that max·min = 1), α over a grid in [0, 1); the α whose
     Q(W·diag(s))·diag(s)⁻¹ has the least output error over all the group's linears wins (α = 0 is plain
     round-to-nearest, so the search never does worse than RTN on the calibration data);
  3. the fold: the linears' input columns × s, the previous op's output ÷ s (an RMSNorm's weight, or the
     previous linear's output rows and bias): the float block computes exactly the same function;
  4. the clipping search, per linear and per quantization group: the grid's range [min, max] shrunk by a ratio
     r over a grid in (0.5, 1], the r with the least output error of that group's share of the output
     (its diagonal block of H) kept;
  5. round-to-nearest on the clipped asymmetric grid (zero point), 4-bit for the GEMM checkpoint.

Scales and zeros come from grid.py (shared with GPTQ and RTN), scales rounded to float16 as stored."""
from dataclasses import dataclass, field

import torch

from . import grid
from .architectures import block_linears, scaling_groups

ALPHA_GRID = 20  # α = 0, 0.05, …, 0.95
CLIP_GRID = 20  # r = 1, 0.975, …, 0.525
CLIP_MAX_SHRINK = 0.5


@dataclass
class InputStats:
    """Running statistics of one input site (the input shared by a group's linears)."""
    width: int
    device: object = "cpu"
    gram: torch.Tensor = None
    abs_sum: torch.Tensor = None
    tokens: int = 0

    def __post_init__(self):
        self.gram = torch.zeros(self.width, self.width, dtype=torch.float32, device=self.device)
        self.abs_sum = torch.zeros(self.width, dtype=torch.float32, device=self.device)

    def add(self, x):
        x = x.detach().reshape(-1, self.width).to(self.gram.device, torch.float32)
        self.gram.addmm_(x.t(), x)
        self.abs_sum += x.abs().sum(0)
        self.tokens += x.shape[0]

    def mean_abs(self):
        return self.abs_sum / max(self.tokens, 1)

    def rescale(self, s):
        """The statistics of X · diag(1/s): what the linears see once s is folded into them."""
        inv = (1.0 / s).to(self.gram)
        self.gram *= inv[:, None] * inv[None, :]
        self.abs_sum *= inv


@dataclass
class Grid:
    bits: int = 4
    group_size: int = 128
    zero_point: bool = True

    def size(self, columns):
        return columns if self.group_size == -1 else self.group_size

    def check(self, columns, name=""):
        g = self.size(columns)
        if columns % g:
            from ..errors import ConfigError

            raise ConfigError(f"group_size {self.group_size} does not divide the {columns} input channels of "
                              f"{name or 'a linear'}; choose a divisor of it, or -1 (per channel)")

    def _grouped(self, w):
        out, cols = w.shape
        g = self.size(cols)
        return w.float().reshape(out, cols // g, g)

    def params(self, w, ratio=None):
        """Scale and zero [out, groups] of w [out, in]; `ratio` [out, groups] (or a number) shrinks each group's
        range before fitting (the clipping)."""
        wg = self._grouped(w)
        out, groups, g = wg.shape
        fit_on = wg if ratio is None else wg * _as_ratio(ratio, wg)
        scale, zero = grid.fit(fit_on.reshape(out * groups, g), self.bits, sym=not self.zero_point)
        return scale.view(out, groups), zero.view(out, groups)

    def codes(self, w, scale, zero):
        """Integer codes [out, in] of w on the fitted grid (values past a clipped range saturate)."""
        wg = self._grouped(w)
        out, groups, g = wg.shape
        q = grid.quantize(wg.reshape(out * groups, g), scale.reshape(-1), zero.reshape(-1), self.bits)
        return q.view(out, groups * g)

    def fake(self, w, ratio=None):
        """w [out, in] quantized and dequantized (float32)."""
        scale, zero = self.params(w, ratio)
        return self.dequant(self.codes(w, scale, zero), scale, zero)

    def dequant(self, q, scale, zero):
        out, cols = q.shape
        groups = scale.shape[1]
        qg = q.reshape(out * groups, cols // groups)
        return grid.dequantize(qg, scale.reshape(-1), zero.reshape(-1)).view(out, cols)


def _as_ratio(ratio, wg):
    if isinstance(ratio, torch.Tensor):
        return ratio.to(wg).unsqueeze(-1)
    return float(ratio)


def output_error(d, gram):
    """‖X Dᵀ‖² for D [out, in] from the Gram matrix of X."""
    d = d.detach().float()
    return float(((d @ gram) * d).sum())


def search_scale(weights, stats, qgrid, steps=ALPHA_GRID):
    """The activation-aware scale s [in] for linears that share an input. Returns (s, alpha, error, rtn_error),
    errors relative to the group's output energy ‖X Wᵀ‖²."""
    w = torch.cat([x.detach().float() for x in weights], 0)
    gram = stats.gram
    energy = max(output_error(w, gram), 1e-30)
    x_mean = stats.mean_abs().clamp(min=1e-8)
    best = None
    rtn = None
    for i in range(steps):
        alpha = i / steps
        s = x_mean.pow(alpha)
        s = (s / (s.max() * s.min()).sqrt()).clamp(min=1e-4)
        err = output_error(w - qgrid.fake(w * s) / s, gram) / energy
        if i == 0:
            rtn = err
        if best is None or err < best[2]:
            best = (s, alpha, err)
    return best[0], best[1], best[2], rtn


@torch.no_grad()
def fold(prev, linears, s):
    """Divides the output of `prev` (a norm or a linear) by s and multiplies the linears' input columns by s:
    the same function, with the weights' salient input channels scaled up before quantization."""
    s = s.float()
    if isinstance(prev, torch.nn.Linear):
        prev.weight.copy_(prev.weight.float() / s[:, None])
    else:
        prev.weight.copy_(prev.weight.float() / s)
    if getattr(prev, "bias", None) is not None:
        prev.bias.copy_(prev.bias.float() / s)
    for lin in linears:
        lin.weight.copy_(lin.weight.float() * s[None, :])


def search_clip(w, gram, qgrid, steps=CLIP_GRID, max_shrink=CLIP_MAX_SHRINK):
    """Per (output row, group) the shrink ratio of the grid's range with the least error of that group's part of
    the output, measured with the group's diagonal block of the Gram matrix. Returns ratios [out, groups]."""
    w = w.detach().float()
    out, cols = w.shape
    g = qgrid.size(cols)
    groups = cols // g
    blocks = torch.stack([gram[j * g:(j + 1) * g, j * g:(j + 1) * g] for j in range(groups)])  # [G, g, g]
    wg = w.view(out, groups, g)
    best_err = torch.full((out, groups), float("inf"), device=w.device)
    best_ratio = torch.ones(out, groups, device=w.device)
    for i in range(steps):
        r = 1.0 - max_shrink * i / steps
        d = (wg - qgrid.fake(w, r).view(out, groups, g)).transpose(0, 1)  # [G, out, g]
        # d_og · H_g · d_ogᵀ per (group, row) as one batched matmul: never an [out, G, g, g] intermediate.
        err = (torch.bmm(d, blocks) * d).sum(-1).t()
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_ratio = torch.where(better, torch.full_like(best_ratio, r), best_ratio)
    return best_ratio


@dataclass
class LinearResult:
    name: str
    q: torch.Tensor = None  # int codes [out, in] (packed output)
    scales: torch.Tensor = None  # [out, groups]
    zeros: torch.Tensor = None  # [out, groups]
    input_scale: torch.Tensor = None  # the AWQ scale multiplied into this linear's input columns, or None
    output_scale: torch.Tensor = None  # the scale its output rows were divided by (it feeds a group), or None
    error: float = 0.0  # relative output error ‖X(W − Ŵ)ᵀ‖² / ‖XWᵀ‖² on the calibration inputs
    rtn_error: float = 0.0  # the same for plain round-to-nearest of the original weights


@dataclass
class BlockResult:
    linears: dict = field(default_factory=dict)  # name (relative to the block) → LinearResult
    groups: list = field(default_factory=list)  # {"group", "alpha", "error", "rtn_error"} per scaling group


def input_sites(model_type):
    """linear name → the linear whose input it shares (the first of its scaling group)."""
    from .architectures import _lookup

    sites = {}
    for g in _lookup(model_type)[0]:
        for name in g.linears:
            sites.setdefault(name, g.linears[0])
    for name in block_linears(model_type):
        sites.setdefault(name, name)
    return sites


def collect_stats(block, model_type, run_block, device="cpu"):
    """Runs `run_block()` (which calls the block on the calibration inputs) with hooks that accumulate the
    statistics of each input site. Returns {site: InputStats}."""
    sites = input_sites(model_type)
    stats = {}
    hooks = []
    for site in sorted(set(sites.values())):
        lin = block.get_submodule(site)
        stats[site] = InputStats(lin.in_features, device)

        def hook(module, args, kwargs, st=stats[site]):
            st.add(args[0] if args else kwargs["input"])

        hooks.append(lin.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():
            run_block()
    finally:
        for h in hooks:
            h.remove()
    return stats


@dataclass
class Scaling:
    """What apply_scales did to a block: per linear the scale in its input columns / its output rows."""
    input_scale: dict = field(default_factory=dict)
    output_scale: dict = field(default_factory=dict)
    groups: list = field(default_factory=list)  # {"group", "alpha", "error", "rtn_error"} per scaling group


@torch.no_grad()
def apply_scales(block, model_type, stats, qgrid, on_group=None):
    """Steps 2 and 3 for every scaling group of the block: search s, fold it in, and rescale the statistics of
    the group's input to what the scaled linears now see. The float block's function is unchanged."""
    sites = input_sites(model_type)
    done = Scaling()
    for group in scaling_groups(model_type, block):
        linears = [block.get_submodule(n) for n in group.linears]
        st = stats[sites[group.linears[0]]]
        s, alpha, err, rtn_err = search_scale([lin.weight for lin in linears], st, qgrid)
        prev = block.get_submodule(group.prev)
        fold(prev, linears, s)
        st.rescale(s)
        for n in group.linears:
            done.input_scale[n] = s
        if isinstance(prev, torch.nn.Linear):
            done.output_scale[group.prev] = s
        info = {"group": group.name, "alpha": alpha, "error": err, "rtn_error": rtn_err}
        done.groups.append(info)
        if on_group:
            on_group(info)
    return done


@torch.no_grad()
def awq_block(block, model_type, stats, qgrid, quantize=True, on_group=None):
    """AWQ on one decoder block whose input statistics are `stats` (collect_stats): the scales folded in, then
    each linear clipped and (quantize=True) its weight replaced by its dequantized quantization, so the block
    computes what the checkpoint will; quantize=False leaves the clipped float weights (output "scaled").
    Returns a BlockResult with the codes, scales and zeros of each linear."""
    sites = input_sites(model_type)
    names = block_linears(model_type)
    for name in names:
        qgrid.check(block.get_submodule(name).in_features, name)
    # RTN's error of the untouched weights, for the record.
    rtn = {n: _relative(block.get_submodule(n).weight, qgrid.fake(block.get_submodule(n).weight),
                        stats[sites[n]].gram) for n in names}
    scaling = apply_scales(block, model_type, stats, qgrid, on_group)
    result = BlockResult(groups=scaling.groups)
    for name in names:
        lin = block.get_submodule(name)
        gram = stats[sites[name]].gram
        w = lin.weight.detach().float()
        ratio = search_clip(w, gram, qgrid)
        scale, zero = qgrid.params(w, ratio)
        q = qgrid.codes(w, scale, zero)
        wq = qgrid.dequant(q, scale, zero)
        res = LinearResult(name, input_scale=scaling.input_scale.get(name),
                           output_scale=scaling.output_scale.get(name), error=_relative(w, wq, gram),
                           rtn_error=rtn[name])
        if quantize:
            res.q, res.scales, res.zeros = q, scale, zero
            lin.weight.copy_(wq)
        else:
            lo, hi = _clip_range(w, ratio, qgrid)
            wg = w.view(lo.shape[0], lo.shape[1], -1)
            lin.weight.copy_(torch.minimum(torch.maximum(wg, lo), hi).reshape(w.shape))
        result.linears[name] = res
    return result


def _clip_range(w, ratio, qgrid):
    """The clipped [lo, hi] per (row, group), [out, groups, 1]: the grid's range shrunk by the ratio."""
    out, cols = w.shape
    g = qgrid.size(cols)
    wg = w.view(out, cols // g, g) * ratio.unsqueeze(-1)
    lo, hi = wg.amin(-1, keepdim=True).clamp(max=0), wg.amax(-1, keepdim=True).clamp(min=0)
    if not qgrid.zero_point:
        hi = torch.maximum(-lo, hi)
        lo = -hi
    return lo, hi


def _relative(w, wq, gram):
    w = w.detach().float()
    return output_error(w - wq, gram) / max(output_error(w, gram), 1e-30)
