"""The fp32 graph: the causal LM traced by torch.onnx's TorchScript exporter (dynamo=False: the torch.export one
needs onnxscript and rejects transformers' cache objects) with its KV cache as flat inputs and outputs, named as
Optimum and transformers.js name them:

  inputs   input_ids [batch_size, sequence_length] int64, attention_mask [batch_size, total_sequence_length] int64,
           position_ids [batch_size, sequence_length] int64,
           past_key_values.{i}.key|value [batch_size, kv_heads, past_sequence_length, head_dim] float32
  outputs  logits [batch_size, sequence_length, vocab], present.{i}.key|value [batch_size, kv_heads,
           total_sequence_length, head_dim]

kv_heads, head_dim and vocab are static. A first call passes past tensors with past_sequence_length 0."""
import torch

from ..errors import ConfigError, RecipeError

BATCH, SEQ, PAST, TOTAL = "batch_size", "sequence_length", "past_sequence_length", "total_sequence_length"


class CacheShape:
    """Layers, KV heads and head size of a decoder, read from its text config."""

    def __init__(self, config):
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        self.layers = text.num_hidden_layers
        self.kv_heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
        self.head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        self.vocab = text.vocab_size

    def input_names(self):
        return ["input_ids", "attention_mask", "position_ids"] + [
            f"past_key_values.{i}.{kv}" for i in range(self.layers) for kv in ("key", "value")]

    def output_names(self):
        return ["logits"] + [f"present.{i}.{kv}" for i in range(self.layers) for kv in ("key", "value")]

    def dynamic_axes(self):
        axes = {"input_ids": {0: BATCH, 1: SEQ}, "attention_mask": {0: BATCH, 1: TOTAL},
                "position_ids": {0: BATCH, 1: SEQ}, "logits": {0: BATCH, 1: SEQ}}
        for name in self.input_names()[3:]:
            axes[name] = {0: BATCH, 2: PAST}
        for name in self.output_names()[1:]:
            axes[name] = {0: BATCH, 2: TOTAL}
        return axes

    def empty_past(self, batch, length=0, dtype=torch.float32):
        return [torch.zeros(batch, self.kv_heads, length, self.head_dim, dtype=dtype) for _ in range(2 * self.layers)]


class FlatCacheLM(torch.nn.Module):
    """forward(input_ids, attention_mask, position_ids, *past) → (logits, *present): the model's DynamicCache
    unrolled into one tensor per layer and key/value, which is what an ONNX graph can take and give back."""

    def __init__(self, model, shape):
        super().__init__()
        self.model, self.shape = model, shape

    def forward(self, input_ids, attention_mask, position_ids, *past):
        from transformers import DynamicCache

        # Full layers for every decoder layer, also where the config asks for sliding-window ones: those keep only
        # the last `window` positions, which would make present.* shorter than total_sequence_length. The window
        # is applied by the attention mask (built from the config), as with any full cache.
        cache = DynamicCache()
        for i in range(self.shape.layers):
            cache.update(past[2 * i], past[2 * i + 1], i)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         past_key_values=cache, use_cache=True)
        present = []
        for layer in out.past_key_values.layers:
            present += [layer.keys, layer.values]
        if len(present) != 2 * self.shape.layers:
            raise ConfigError(f"the model returned {len(present) // 2} cache layers for {self.shape.layers} "
                              "decoder layers; this architecture's cache cannot be exported as flat tensors")
        return (out.logits, *present)


def sample_inputs(shape, past=2, seq=3):
    """Two rows, the first left-padded by one position, so the trace sees a mask that is not all ones (a mask
    of ones lets attention code take shortcuts that would be baked into the graph)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, shape.vocab, (2, seq), generator=g)
    mask = torch.ones(2, past + seq, dtype=torch.long)
    mask[0, 0] = 0
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, past:]
    cache = [torch.randn(2, shape.kv_heads, past, shape.head_dim, generator=g) for _ in range(2 * shape.layers)]
    return ids, mask, positions, cache


def export_graph(model, shape, path, opset):
    """Traces the model into `path` (a single .onnx file; the caller moves weights to external data if needed)."""
    import warnings

    wrapper = FlatCacheLM(model, shape).eval()
    ids, mask, positions, cache = sample_inputs(shape)
    with torch.no_grad(), warnings.catch_warnings():
        # TracerWarnings about Python conditionals: the checks after export (verify.py) are what guard those.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(wrapper, (ids, mask, positions, *cache), path, input_names=shape.input_names(),
                              output_names=shape.output_names(), dynamic_axes=shape.dynamic_axes(),
                              opset_version=opset, do_constant_folding=True, dynamo=False)
        except torch.onnx.errors.OnnxExporterError as e:
            # e.g. a mixture-of-experts router's aten::histc, which has no ONNX operator.
            arch = (model.config.architectures or [type(model).__name__])[0]
            raise RecipeError(f"torch.onnx cannot export {arch}: {str(e).splitlines()[0]}") from None
