"""GPTQ and round-to-nearest as a quantization method of the pipeline (pipeline.py): per decoder block, the
linears are quantized stage by stage ("true sequential": q/k/v, then o with the inputs the quantized q/k/v give,
then gate/up, then down), each stage's Hessian collected from the block's calibration inputs; the checkpoint is
the classic GPTQ format (pack_gptq.py)."""
from ..errors import RecipeError
from . import pack_gptq
from .checkpoint import write_checkpoint
from .gptq import Hessian, Prepared, gptq_quantize, output_error
from .rtn import rtn_quantize


class GptqMethod:
    def __init__(self, cfg):
        self.cfg = cfg
        self.rtn = cfg.method == "rtn"
        group = "per channel" if cfg.group_size == -1 else f"g{cfg.group_size}"
        name = "round-to-nearest" if self.rtn else "GPTQ"
        self.title = f"{name} {cfg.bits}-bit, {group}" + (", act-order" if cfg.desc_act and not self.rtn else "")
        self.packed = {}
        self.errors = []
        self._block_errors = []

    def quantize_block(self, ctx):
        self._block_errors = []
        if ctx.index == 0:
            self._check_shapes(ctx)
        if ctx.inputs is None:  # round-to-nearest without calibration data: no Hessian, no error to report
            for name, linear in ctx.linears.items():
                ctx.check()
                self._store(ctx.full_name(name), linear, *self._rtn(linear), None)
            return
        for stage in ctx.stages():
            ctx.check()
            first = ctx.linears[stage[0]]
            hessian = Hessian(first.in_features, ctx.device)
            # The stage's linears read the same tensor: one Hessian serves them all.
            ctx.run(lambda _, x: hessian.add(x), [stage[0]], stop=True)
            prepared = None if self.rtn else Prepared(hessian.matrix, self.cfg.damp, self.cfg.desc_act)
            for name in stage:
                ctx.check()
                linear = ctx.linears[name]
                if self.rtn:
                    result = self._rtn(linear)
                else:
                    result = gptq_quantize(linear.weight.data, prepared, self.cfg.bits, self.cfg.group_size,
                                           self.cfg.sym)
                error = output_error(linear.weight.data, result[4], hessian.matrix)
                self._store(ctx.full_name(name), linear, *result, error)

    def _check_shapes(self, ctx):
        """Before any work: the format packs 32/bits values per int32 word along both dimensions."""
        per = 32 // self.cfg.bits
        for name, linear in ctx.linears.items():
            if linear.in_features % per or linear.out_features % per:
                raise RecipeError(f"{ctx.full_name(name)} ({linear.in_features} → {linear.out_features}) cannot be "
                                  f"stored in the GPTQ format at {self.cfg.bits} bits: both sizes must be multiples "
                                  f"of {per}")

    def _rtn(self, linear):
        return rtn_quantize(linear.weight.data, self.cfg.bits, self.cfg.group_size, self.cfg.sym)

    def _store(self, full_name, linear, q, scales, zeros, g_idx, dequantized, error):
        self.packed[full_name] = pack_gptq.pack(q, scales, zeros, g_idx, self.cfg.bits)
        linear.weight.data.copy_(dequantized.to(linear.weight.dtype))
        if error is not None:
            self.errors.append({"name": full_name, "error": error})
            self._block_errors.append(error)

    def block_error(self):
        return sum(self._block_errors) / len(self._block_errors) if self._block_errors else None

    def quantization_config(self):
        c = self.cfg
        return {"quant_method": "gptq", "bits": c.bits, "group_size": c.group_size, "desc_act": c.desc_act,
                "sym": c.sym, "damp_percent": c.damp, "true_sequential": True, "static_groups": False,
                "checkpoint_format": "gptq", "format": "gptq"}

    def write(self, out, src, model):
        replace, drop = {}, set()
        for name, t in self.packed.items():
            drop.add(f"{name}.weight")
            for key in ("qweight", "qzeros", "scales", "g_idx"):
                replace[f"{name}.{key}"] = t[key]
        qc = self.quantization_config()
        legacy = {k: v for k, v in qc.items() if k != "format"}
        legacy.update({"model_name_or_path": None, "model_file_base_name": "model"})
        return write_checkpoint(out, src, replace, drop, quantization_config=qc, dtype="float16",
                                extra_json={"quantize_config.json": legacy})

    def summary(self):
        return {"quantized_linears": len(self.packed), "layer_errors": self.errors}
