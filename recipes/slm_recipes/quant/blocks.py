"""The sequential block driver: the model stays on the CPU in its stored dtype, and one decoder block at a time
moves to the device (in float32), is quantized by a per-block callback, and then produces the inputs of the next
block from its own quantized weights. So a block's calibration inputs always come from the already-quantized
blocks before it, and the device holds one block plus the calibration activations, never the whole model.

The inputs of block 0 are captured by a forward pre-hook on it that stops the model's forward: whatever the model
computes before its first block (embeddings, rotary position embeddings, the attention mask, cache positions)
arrives as the block's own arguments, so the driver never rebuilds them and does not depend on their names."""
import time

import torch

from ..errors import Cancelled, RecipeError

# Calibration windows go through a block in chunks of about this many tokens.
_CHUNK_TOKENS = 2048


class _Halt(Exception):
    """Ends a block's forward once the inputs wanted from it are collected."""


class _Stop(Exception):
    def __init__(self, args, kwargs):
        super().__init__("block 0 reached")
        self.block_args, self.block_kwargs = args, kwargs


def load_model(path):
    """The causal LM on the CPU in its stored dtype, no cache, no gradients."""
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype="auto")
    except (OSError, ValueError) as e:
        raise RecipeError(f"could not load the model from {path}: {e}") from None
    model.eval()
    model.config.use_cache = False
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def decoder_blocks(model):
    """(prefix, ModuleList) of the model's decoder blocks: the module list as long as its layer count."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    count = getattr(cfg, "num_hidden_layers", None)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count and count:
            return name, module
    raise RecipeError(f"cannot find the decoder blocks of {type(model).__name__} "
                      f"(no list of {count} layers); supported: Llama-style decoder models")


def linears_of(module):
    """{relative name: nn.Linear} in the module's order."""
    return {n: m for n, m in module.named_modules() if isinstance(m, torch.nn.Linear)}


def _to(value, device):
    """Tensors (also inside tuples, lists and dicts) onto the device, floating ones as float32."""
    if isinstance(value, torch.Tensor):
        return value.to(device, dtype=torch.float32 if value.is_floating_point() else value.dtype)
    if isinstance(value, tuple):
        return tuple(_to(v, device) for v in value)
    if isinstance(value, list):
        return [_to(v, device) for v in value]
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    return value


def _same(a, b):
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return not isinstance(a, torch.Tensor) and not isinstance(b, torch.Tensor) and a is b


def capture_block0_inputs(model, blocks, windows, device, chunk, interrupt=None):
    """[(hidden_states, kwargs)] per chunk of windows, on the device. Keyword values equal to the previous chunk's
    (the position embeddings and masks of windows of the same length) are shared, not stored again."""
    def stop(module, args, kwargs):
        raise _Stop(args, kwargs)

    handle = blocks[0].register_forward_pre_hook(stop, with_kwargs=True)
    chunks, previous = [], {}
    try:
        with torch.no_grad():
            for start in range(0, windows.shape[0], chunk):
                if interrupt is not None and interrupt.requested:
                    raise Cancelled("interrupted while reading the calibration data into the model")
                try:
                    model(input_ids=windows[start:start + chunk], use_cache=False)
                except _Stop as s:
                    args, kwargs = list(s.block_args), dict(s.block_kwargs)
                else:
                    raise RecipeError("the model's forward never reached its first decoder block")
                hidden = args.pop(0) if args else kwargs.pop("hidden_states")
                if args:
                    raise RecipeError(f"the first decoder block is called with {len(args) + 1} positional "
                                      "arguments; only the hidden states are expected positionally")
                kwargs.pop("past_key_values", None)
                kwargs.pop("past_key_value", None)
                kwargs["use_cache"] = False
                kwargs = {k: previous[k] if k in previous and _same(previous[k], v) else _to(v, device)
                          for k, v in kwargs.items()}
                previous = kwargs
                chunks.append((_to(hidden, device), kwargs))
    finally:
        handle.remove()
    return chunks


class BlockContext:
    """What a per-block callback gets: the block (on the device, float32), its linears, and ways to run the
    calibration inputs through it. `inputs` is [(hidden_states, kwargs)] per chunk, or None without calibration."""

    def __init__(self, index, name, block, inputs, device, interrupt):
        self.index, self.name, self.block = index, name, block
        self.inputs, self.device, self.interrupt = inputs, device, interrupt
        self.linears = linears_of(block)

    def check(self):
        if self.interrupt is not None and self.interrupt.requested:
            raise Cancelled("interrupted while quantizing")

    def full_name(self, linear):
        return f"{self.name}.{linear}"

    def run(self, on_input=None, names=None, outputs=False, limit=None, stop=False):
        """Runs the calibration chunks (the first `limit` of them) through the block. on_input(name, x) gets the
        input of each linear in `names` (x: [tokens, in_features]); stop=True ends each chunk's forward as soon as
        all of them have had their input (the rest of the block is not computed). Returns the block outputs
        when asked."""
        names = list(names or ())
        pending = set()
        handles = []
        for n in names:
            def hook(module, args, n=n):
                on_input(n, args[0].detach().reshape(-1, args[0].shape[-1]))
                pending.discard(n)
                if stop and not pending:
                    raise _Halt()
            handles.append(self.linears[n].register_forward_pre_hook(hook))
        results = []
        try:
            with torch.no_grad():
                for hidden, kwargs in self.inputs[:limit]:
                    self.check()
                    pending.update(names)
                    try:
                        out = self.block(hidden, **kwargs)
                    except _Halt:
                        continue
                    if outputs:
                        results.append(((out[0] if isinstance(out, (tuple, list)) else out), kwargs))
        finally:
            for h in handles:
                h.remove()
        return results if outputs else None

    def stages(self):
        """The block's linears grouped by shared input, in the order the block calls them: for a Llama block
        [[q, k, v], [o], [gate, up], [down]]. Found from one chunk, so it holds for any architecture whose
        linears that read the same tensor can be quantized together."""
        order, groups, alive = [], {}, []

        def seen(name, x):
            alive.append(x)  # held, so that no later tensor reuses its memory (and its address) during the run
            key = (x.data_ptr(), tuple(x.shape))
            if key not in groups:
                groups[key] = []
                order.append(key)
            groups[key].append(name)

        self.run(seen, list(self.linears), limit=1)
        return [groups[k] for k in order]


def run_blocks(model, windows, device, on_block, interrupt=None, on_done=None):
    """Drives on_block(ctx: BlockContext) over the decoder blocks in order. windows: LongTensor [n, seq_len] or
    None (no calibration: the callback gets ctx.inputs None). on_done(index, total, seconds) after each block."""
    prefix, blocks = decoder_blocks(model)
    inputs = None
    if windows is not None:
        chunk = max(1, _CHUNK_TOKENS // windows.shape[1])
        inputs = capture_block0_inputs(model, blocks, windows, device, chunk, interrupt)
    start = time.monotonic()
    for i, block in enumerate(blocks):
        if interrupt is not None and interrupt.requested:
            raise Cancelled("interrupted while quantizing")
        dtype = next(block.parameters()).dtype
        block.to(device, dtype=torch.float32)
        ctx = BlockContext(i, f"{prefix}.{i}", block, inputs, device, interrupt)
        on_block(ctx)
        if inputs is not None and i + 1 < len(blocks):
            inputs = ctx.run(outputs=True)
        block.to("cpu", dtype=dtype)
        del ctx
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if on_done is not None:
            on_done(i, len(blocks), time.monotonic() - start)
    return len(blocks)
