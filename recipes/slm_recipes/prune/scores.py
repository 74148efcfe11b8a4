"""What pruning measures on the calibration windows, in one pass of the unpruned model:

- block influence (Men et al. 2024, "ShortGPT"): for block i with input hidden states x and output y,
  BI_i = 1 − mean over every calibration token of cos(x_t, y_t). A block whose output points where its input
  did changes the residual stream least and is the first to go. The input and output are taken at the block
  itself (hooks), not from `output_hidden_states`, whose last entry transformers gives after the final norm.
- FFN channel importance (Minitron, Sreenivas et al. 2024): the activation entering down_proj (act(gate) · up),
  its magnitude averaged over each window's tokens, then the L2 norm of those means over the windows."""
import time

import torch

from .. import events as ev

# Windows go through the model in batches of about this many tokens.
_BATCH_TOKENS = 4096


def _hidden(args, kwargs):
    return args[0] if args else kwargs["hidden_states"]


def _output(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def mlp_projections(block):
    """(gate_proj, up_proj, down_proj) of a Llama-style gated MLP, or None."""
    mlp = getattr(block, "mlp", None)
    parts = [getattr(mlp, n, None) for n in ("gate_proj", "up_proj", "down_proj")]
    return parts if all(isinstance(p, torch.nn.Linear) for p in parts) else None


def measure(model, blocks, windows, device, want_blocks, want_channels, step_id):
    """{"block_influence": [float per block] | None, "channel_importance": [tensor [I] per block] | None}."""
    n_blocks = len(blocks)
    cos_sum = torch.zeros(n_blocks, dtype=torch.float64)
    tokens = 0
    chan_sq = [None] * n_blocks
    inputs = {}
    handles = []
    for i, block in enumerate(blocks):
        if want_blocks:
            def pre(module, args, kwargs, i=i):
                inputs[i] = _hidden(args, kwargs)

            def post(module, args, kwargs, out, i=i):
                x, y = inputs.pop(i).float(), _output(out).float()
                cos_sum[i] += torch.nn.functional.cosine_similarity(x, y, dim=-1).double().sum().cpu()

            handles.append(block.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(block.register_forward_hook(post, with_kwargs=True))
        if want_channels:
            def down_in(module, args, i=i):
                per_window = args[0].float().abs().mean(dim=1)  # [batch, I]: mean magnitude over the tokens
                sq = (per_window.double() ** 2).sum(dim=0).cpu()
                chan_sq[i] = sq if chan_sq[i] is None else chan_sq[i] + sq

            handles.append(mlp_projections(block)[2].register_forward_pre_hook(down_in))
    batch = max(1, _BATCH_TOKENS // windows.shape[1])
    started = time.monotonic()
    try:
        with torch.no_grad():
            for start in range(0, windows.shape[0], batch):
                chunk = windows[start:start + batch].to(device)
                model(input_ids=chunk, use_cache=False)
                tokens += chunk.numel()
                elapsed = time.monotonic() - started
                ev.progress(step_id, "tokens", tokens, windows.numel(), tokens / elapsed if elapsed > 0 else None)
    finally:
        for h in handles:
            h.remove()
    return {
        "block_influence": [1.0 - float(s) / tokens for s in cos_sum] if want_blocks else None,
        "channel_importance": [c.sqrt() for c in chan_sq] if want_channels else None,
    }


def lowest(scores, k):
    """The indices of the k smallest scores, ascending by index; ties go to the later block."""
    order = sorted(range(len(scores)), key=lambda i: (scores[i], -i))
    return sorted(order[:k])
