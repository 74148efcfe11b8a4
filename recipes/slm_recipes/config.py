"""Validation of recipe config files (the recipe protocol in docs/finetune-recipes.md). Pure Python: it runs,
and is tested, without torch. Every problem is a ConfigError naming the key, so a mistake on the TypeScript side
fails loudly instead of being ignored."""
import os
from types import SimpleNamespace

from .errors import ConfigError

_ABSENT = object()


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool) or isinstance(v, float) and v.is_integer()


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class _Reader:
    def __init__(self, raw, what):
        if not isinstance(raw, dict):
            raise ConfigError(f"{what} config must be a JSON object")
        self.raw, self.what, self.seen = raw, what, set()

    def get(self, key, default=_ABSENT):
        self.seen.add(key)
        if key not in self.raw:
            if default is _ABSENT:
                raise ConfigError(f"{self.what} config: missing key {key!r}")
            return default
        return self.raw[key]

    def bad(self, key, want):
        return ConfigError(f"{self.what} config: {key!r} must be {want}, got {self.raw.get(key)!r}")

    def string(self, key, default=_ABSENT, nullable=False):
        v = self.get(key, default)
        if v is None and nullable:
            return None
        if not isinstance(v, str) or not v:
            raise self.bad(key, "a non-empty string" + (" or null" if nullable else ""))
        return v

    def boolean(self, key, default=_ABSENT):
        v = self.get(key, default)
        if not isinstance(v, bool):
            raise self.bad(key, "true or false")
        return v

    def integer(self, key, minimum, default=_ABSENT, nullable=False):
        v = self.get(key, default)
        if v is None and nullable:
            return None
        if not _is_int(v) or v < minimum:
            raise self.bad(key, f"an integer >= {minimum}" + (" or null" if nullable else ""))
        return int(v)

    def number(self, key, low, high=None, low_open=False, high_open=False, default=_ABSENT):
        v = self.get(key, default)
        ok = _is_num(v) and (v > low if low_open else v >= low)
        if ok and high is not None:
            ok = v < high if high_open else v <= high
        if not ok:
            lo = f"{'>' if low_open else '>='} {low}"
            hi = "" if high is None else f" and {'<' if high_open else '<='} {high}"
            raise self.bad(key, f"a number {lo}{hi}")
        return float(v)

    def choice(self, key, options, default=_ABSENT):
        v = self.get(key, default)
        if v not in options:
            raise self.bad(key, "one of " + ", ".join(repr(o) for o in options))
        return v

    def finish(self):
        unknown = sorted(set(self.raw) - self.seen)
        if unknown:
            raise ConfigError(f"{self.what} config: unknown key(s) {', '.join(map(repr, unknown))}")


def _existing_dir(path, key, must_have=None):
    if not os.path.isdir(path):
        raise ConfigError(f"{key}: {path} is not a folder")
    if must_have and not os.path.isfile(os.path.join(path, must_have)):
        raise ConfigError(f"{key}: {path} has no {must_have}")
    return os.path.abspath(path)


def _existing_file(path, key):
    if not os.path.isfile(path):
        raise ConfigError(f"{key}: {path} does not exist")
    return os.path.abspath(path)


def finetune_config(raw):
    r = _Reader(raw, "finetune")
    c = SimpleNamespace()
    c.base = _existing_dir(r.string("base"), "base", "config.json")
    c.train = _existing_file(r.string("train"), "train")
    ev = r.string("eval", nullable=True)
    c.eval = _existing_file(ev, "eval") if ev else None
    c.output_dir = os.path.abspath(r.string("output_dir"))
    c.chat_template = r.string("chat_template", nullable=True)
    c.train_on_prompt = r.boolean("train_on_prompt")
    c.epochs = r.number("epochs", 0, low_open=True)
    c.max_steps = r.integer("max_steps", 1, nullable=True)
    c.lr = r.number("lr", 0, low_open=True)
    c.rank = r.integer("rank", 1)
    c.alpha = r.number("alpha", 0, low_open=True)
    c.dropout = r.number("dropout", 0, 1, high_open=True)
    tm = r.get("target_modules")
    if tm != "all-linear" and not (isinstance(tm, list) and tm and all(isinstance(m, str) and m for m in tm)):
        raise r.bad("target_modules", '"all-linear" or a non-empty list of module names')
    c.target_modules = tm
    c.batch_size = r.integer("batch_size", 1)
    c.grad_accum = r.integer("grad_accum", 1)
    c.max_seq_len = r.integer("max_seq_len", 2)
    c.packing = r.boolean("packing")
    c.qlora = r.boolean("qlora")
    c.seed = r.integer("seed", 0)
    c.resume = r.boolean("resume")
    c.merge = r.boolean("merge")
    c.device = r.choice("device", ("auto", "cpu", "cuda"))
    c.gpus = r.integer("gpus", 1)
    # Optional keys beyond the agreed protocol (defaults chosen by the recipe; see docs/finetune-recipes.md).
    c.checkpointing = r.choice("checkpointing", ("auto", "none", "full", "selective"), default="auto")
    c.compile = r.boolean("compile", default=False)
    c.save_every = r.integer("save_every", 1, default=None, nullable=True)
    c.warmup_ratio = r.number("warmup_ratio", 0, 0.5, default=0.03)
    # Issue 14: full fine-tuning (every weight, no LoRA) and token-level distillation from `teacher` fields.
    c.full = r.boolean("full", default=False)
    c.kd_alpha = None if r.get("kd_alpha", None) is None else r.number("kd_alpha", 0, 1)
    r.finish()
    if c.full and c.qlora:
        raise ConfigError("full: full fine-tuning trains every weight in full precision; it cannot train a 4-bit "
                          "(qlora) model: drop one of them")
    if c.full and c.merge:
        raise ConfigError("merge: a full fine-tune has no adapter to merge (its output is already a whole model)")
    if c.qlora and c.device == "cpu":
        raise ConfigError("qlora: 4-bit training (bitsandbytes) needs a CUDA GPU; use device \"cuda\" or \"auto\", or drop qlora")
    return c


def merge_config(raw):
    r = _Reader(raw, "merge")
    c = SimpleNamespace()
    c.base = _existing_dir(r.string("base"), "base", "config.json")
    c.adapter = _existing_dir(r.string("adapter"), "adapter", "adapter_config.json")
    c.out = os.path.abspath(r.string("out"))
    r.finish()
    return c


_GPTQ_BITS = (2, 4, 8)
_NO_3BIT = ("bits: 3-bit GPTQ is not supported: its packing splits values across int32 words, and llama.cpp's "
            "convert_hf_to_gguf.py (slm's way back to GGUF) does not read 3-bit GPTQ either; use 2, 4 or 8")


def _empty_or_absent(path, key):
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise ConfigError(f"{key}: {path} already exists and is not an empty folder")
    return path


def _calibration(r, required):
    v = r.get("calibration", None)
    if v is None:
        if required:
            raise ConfigError("quantize config: 'calibration' is required for gptq and awq "
                              "(an object {\"file\": ..., \"format\": \"text\" | \"chat-jsonl\"})")
        return None
    c = _Reader(v, "quantize calibration")
    cal = SimpleNamespace(file=_existing_file(c.string("file"), "calibration.file"),
                          format=c.choice("format", ("text", "chat-jsonl")))
    c.finish()
    return cal


def quantize_config(raw):
    """Contract 1 of issue 11 (docs/quantize-recipes.md): quantize an HF folder with GPTQ, AWQ or round-to-nearest,
    or dequantize a GPTQ/AWQ folder."""
    r = _Reader(raw, "quantize")
    c = SimpleNamespace()
    c.task = r.choice("task", ("quantize", "dequantize"), default="quantize")
    c.model = _existing_dir(r.string("model"), "model", "config.json")
    c.output_dir = _empty_or_absent(os.path.abspath(r.string("output_dir")), "output_dir")
    c.device = r.choice("device", ("auto", "cpu", "cuda"), default="auto")
    c.threads = r.integer("threads", 1, default=None, nullable=True)
    if c.task == "dequantize":
        c.dtype = r.choice("dtype", ("float16", "bfloat16", "float32"), default="float16")
        r.finish()
        return c
    c.method = r.choice("method", ("gptq", "awq", "rtn"))
    c.output = r.choice("output", ("packed", "scaled"), default="packed")
    c.bits = r.integer("bits", 2, default=4)
    c.group_size = r.integer("group_size", -1, default=128)
    c.desc_act = r.boolean("desc_act", default=False)
    c.sym = r.boolean("sym", default=True)
    c.damp = r.number("damp", 0, 1, low_open=True, default=0.01)
    c.zero_point = r.boolean("zero_point", default=True)
    c.calibration = _calibration(r, required=c.method != "rtn")
    c.samples = r.integer("samples", 1, default=128)
    c.seq_len = r.integer("seq_len", 2, default=512)
    r.finish()
    if c.group_size == 0:
        raise r.bad("group_size", "-1 (per channel) or a positive integer")
    if c.output == "scaled" and c.method != "awq":
        raise ConfigError("output: \"scaled\" (AWQ's scales applied to float weights) is for method \"awq\" only")
    if c.method == "awq":
        if c.output == "packed" and c.bits != 4:
            raise ConfigError(f"bits: AWQ's GEMM checkpoint format is 4-bit only, got {c.bits}")
        if not 2 <= c.bits <= 8:
            raise r.bad("bits", "an integer from 2 to 8")
    else:
        if c.bits == 3:
            raise ConfigError(_NO_3BIT)
        if c.bits not in _GPTQ_BITS:
            raise r.bad("bits", "2, 4 or 8")
    return c
