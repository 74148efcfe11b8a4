"""AWQ as a quantization method of the pipeline (pipeline.py): per decoder block, the statistics of each scaling
group's input from the block's calibration inputs, then awq.awq_block (scales, fold, clipping, 4-bit grid).

output "packed": an AWQ GEMM checkpoint (pack_awq.py); the folded norms (and biases of linears that fed a group)
are written as the float tensors they now are.
output "scaled": no packing; the block's clipped, scaled float weights and the folded norms replace the source's
tensors in an unquantized folder (source dtype, no quantization_config), for convert_hf_to_gguf + llama-quantize.
The next block's calibration inputs come from this block as it will be used: quantized for "packed", float for
"scaled" (llama-quantize rounds later, on its own grid)."""
import torch

from ..errors import ConfigError
from . import pack_awq
from .architectures import check_supported, scaling_groups
from .awq import Grid, InputStats, awq_block, input_sites
from .checkpoint import read_config, write_checkpoint


class AwqMethod:
    def __init__(self, cfg):
        self.cfg = cfg
        source = read_config(cfg.model)
        self.model_type = source.get("model_type")
        check_supported(self.model_type, (source.get("architectures") or [None])[0])
        if cfg.calibration is None:
            raise ConfigError("AWQ needs calibration data: its scales come from the activations")
        self.scaled = cfg.output == "scaled"
        self.grid = Grid(cfg.bits, cfg.group_size, cfg.zero_point)
        group = "per channel" if cfg.group_size == -1 else f"g{cfg.group_size}"
        self.title = f"AWQ {cfg.bits}-bit, {group}" + (", scaled float weights" if self.scaled else "")
        self.packed = {}  # full linear name → {qweight, qzeros, scales}
        self.changed = []  # full names of float parameters the fold or the clipping changed
        self.errors = []
        self.groups = []
        self._block_errors = []

    def quantize_block(self, ctx):
        ctx.check()
        sites = sorted(set(input_sites(self.model_type).values()))
        stats = {s: InputStats(ctx.linears[s].in_features, ctx.device) for s in sites}
        ctx.run(lambda name, x: stats[name].add(x), sites)
        ctx.check()
        applied = scaling_groups(self.model_type, ctx.block)
        result = awq_block(ctx.block, self.model_type, stats, self.grid, quantize=not self.scaled)
        self._block_errors = []
        for name, r in result.linears.items():
            full = ctx.full_name(name)
            self.errors.append({"name": full, "error": r.error})
            self._block_errors.append(r.error)
            if self.scaled:
                self.changed.append(f"{full}.weight")
            else:
                self.packed[full] = {k: v.cpu() for k, v in pack_awq.pack(r.q.cpu(), r.zeros.cpu(),
                                                                           r.scales.cpu()).items()}
        for g in applied:
            prev = ctx.block.get_submodule(g.prev)
            for p in ("weight", "bias"):
                if getattr(prev, p, None) is None or (p == "weight" and isinstance(prev, torch.nn.Linear)):
                    continue  # a linear's weight is already in the list (scaled) or packed
                self.changed.append(f"{ctx.full_name(g.prev)}.{p}")
        self.groups.extend({"block": ctx.index, **info} for info in result.groups)

    def block_error(self):
        return sum(self._block_errors) / len(self._block_errors) if self._block_errors else None

    def write(self, out, src, model):
        params = dict(model.named_parameters())
        # The changed float tensors as the model now holds them (back in its stored dtype). Listed in `drop` too,
        # so a name the source's files do not have is an error rather than a silently added tensor.
        replace = {name: params[name].detach().cpu() for name in self.changed}
        drop = set(replace)
        if self.scaled:
            return write_checkpoint(out, src, replace, drop)
        for name, t in self.packed.items():
            drop.add(f"{name}.weight")
            for key in ("qweight", "qzeros", "scales"):
                replace[f"{name}.{key}"] = t[key]
        qc = pack_awq.quantization_config(self.cfg.group_size, self.cfg.zero_point)
        return write_checkpoint(out, src, replace, drop, quantization_config=qc, dtype="float16")

    def summary(self):
        # GPTQ's knobs do not apply to AWQ: null, as zero_point is for GPTQ.
        return {"quantized_linears": 0 if self.scaled else len(self.packed), "layer_errors": self.errors,
                "zero_point": self.cfg.zero_point, "sym": None, "desc_act": None, "damp": None,
                "awq_groups": self.groups}
