"""Where AWQ may move a scale: per decoder-block architecture, the scaling groups (a previous op whose output
feeds only the group's linears, so multiplying the linears' input channels by s and dividing the previous op's
output by s leaves the block's function unchanged) and the order in which the block's linears are quantized.

Llama-style blocks (llama, mistral, qwen2, qwen3 in transformers 5.17 share these module names):
  input_layernorm → self_attn.{q,k,v}_proj         (RMSNorm weight: x·w, so w / s is exact)
  self_attn.v_proj → self_attn.o_proj              (v's output rows; only when v's outputs are o's inputs one
                                                    to one, i.e. not under grouped-query attention, where o
                                                    reads each value head several times)
  post_attention_layernorm → mlp.{gate,up}_proj
  mlp.up_proj → mlp.down_proj                      (down reads act(gate) · up: up's rows / s is exact)
Qwen3's q_norm/k_norm act on q/k's outputs, after the scaled input channels: they do not change the folding.
Gemma is left out on purpose: its RMSNorm multiplies by (1 + w), so w / s is not a fold."""
from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class ScalingGroup:
    name: str  # short label for logs and metrics, e.g. "qkv"
    prev: str  # the op whose output the scales are folded into, relative to the decoder block
    linears: tuple  # the linears that read that output, relative to the decoder block


_LLAMA_GROUPS = (
    ScalingGroup("qkv", "input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
    ScalingGroup("o", "self_attn.v_proj", ("self_attn.o_proj",)),
    ScalingGroup("gate_up", "post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj")),
    ScalingGroup("down", "mlp.up_proj", ("mlp.down_proj",)),
)
_LLAMA_LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                  "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")

_ARCHITECTURES = {t: (_LLAMA_GROUPS, _LLAMA_LINEARS) for t in ("llama", "mistral", "qwen2", "qwen3")}

SUPPORTED = tuple(sorted(_ARCHITECTURES))


def _lookup(model_type, architecture=None):
    if model_type not in _ARCHITECTURES:
        named = f"{model_type} ({architecture})" if architecture else str(model_type)
        raise ConfigError(f"AWQ does not know the decoder blocks of model type {named}; it supports "
                          f"{', '.join(SUPPORTED)} (Llama-style blocks). Use --method gptq, which needs no "
                          f"per-architecture scaling groups")
    return _ARCHITECTURES[model_type]


def check_supported(model_type, architecture=None):
    """Raises ConfigError naming the supported model types when AWQ cannot handle this one."""
    _lookup(model_type, architecture)


def block_linears(model_type):
    """The names of a decoder block's linears, in the order the block runs them."""
    return _lookup(model_type)[1]


def scaling_groups(model_type, block):
    """The scaling groups that apply to this block: a linear → linear group is kept only when the previous
    linear's outputs are the next one's inputs one to one (same width)."""
    groups = []
    for g in _lookup(model_type)[0]:
        prev = block.get_submodule(g.prev)
        first = block.get_submodule(g.linears[0])
        width = getattr(prev, "out_features", None)
        if width is not None and width != first.in_features:
            continue
        groups.append(g)
    return groups
