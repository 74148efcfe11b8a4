"""Cross-entropy over a large vocabulary without materialising the [tokens × vocab] logits.

A causal LM's usual loss computes logits for every position (8 × 2048 tokens × 128k vocabulary is 4 GiB in
bf16, then 8 GiB more in fp32 for the softmax, and the same again for its gradient). Here the loss is computed
from the hidden states and the output projection in chunks of rows: for each chunk, logits → log-sum-exp →
loss, and at once the gradient with respect to the hidden states ((softmax − one-hot) · W), which is kept for
backward. Peak extra memory is one chunk's logits; backward is a multiply by the incoming scalar. Only positions
that carry a label are computed at all (prompt tokens masked out of the loss cost nothing).

The output projection must be frozen (LoRA never trains lm_head unless asked): its weight gradient is not
computed. Callers fall back to the ordinary loss otherwise.

With `compiled=True` the per-chunk function goes through torch.compile, which fuses the log-sum-exp, the
softmax, the one-hot subtraction and the cast into a couple of kernels instead of one pass over the chunk's
logits each (the head's elementwise work is memory-bound)."""
import torch

IGNORE = -100


def default_chunk_rows(vocab_size, budget_bytes=1 << 30):
    """Rows per chunk so that one chunk's fp32 logits stay near `budget_bytes` (1 GiB)."""
    return max(64, min(8192, budget_bytes // (4 * vocab_size)))


def chunk_loss_and_grad(h, w, t):
    """Sum of −log softmax(h·Wᵀ)[t] over the rows of one chunk, and its gradient with respect to h."""
    logits = (h @ w.t()).float()
    lse = torch.logsumexp(logits, dim=-1)
    loss = (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
    # d(lse − logit_t)/d logits = softmax − one_hot(t)
    probs = torch.exp(logits - lse[:, None])
    probs = probs.scatter_add(1, t[:, None], torch.full_like(lse[:, None], -1.0))
    return loss, probs.to(h.dtype) @ w


def chunk_loss(h, w, t):
    logits = (h @ w.t()).float()
    return (torch.logsumexp(logits, dim=-1) - logits.gather(1, t[:, None]).squeeze(1)).sum()


_compiled = {}


def _fn(f, compiled):
    if not compiled:
        return f
    if f not in _compiled:
        _compiled[f] = torch.compile(f, dynamic=True)
    return _compiled[f]


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_rows, compute_dtype, compiled):
        fn = _fn(chunk_loss_and_grad, compiled)
        h_all = hidden.to(compute_dtype)
        w = weight.to(compute_dtype)
        grad_h = torch.empty_like(h_all)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for s in range(0, h_all.shape[0], chunk_rows):
            loss, grad_h[s : s + chunk_rows] = fn(h_all[s : s + chunk_rows], w, targets[s : s + chunk_rows])
            total += loss
        ctx.save_for_backward(grad_h)
        ctx.hidden_dtype = hidden.dtype
        return total

    @staticmethod
    def backward(ctx, grad_out):
        (grad_h,) = ctx.saved_tensors
        return (grad_h * grad_out.to(grad_h.dtype)).to(ctx.hidden_dtype), None, None, None, None, None


def linear_cross_entropy_sum(hidden, weight, labels, chunk_rows=None, compute_dtype=None, compiled=False):
    """Sum of next-token cross-entropy over labelled positions.

    hidden: [batch, seq, dim] final hidden states; weight: [vocab, dim] frozen output projection;
    labels: [batch, seq] aligned with the inputs (IGNORE where no loss), shifted here by one.
    Returns (loss_sum as a 0-d fp32 tensor, number of labelled positions)."""
    h = hidden[:, :-1]
    t = labels[:, 1:]
    keep = t != IGNORE
    h = h[keep]
    t = t[keep]
    n = int(t.numel())
    if n == 0:
        # Keeps the graph connected (a zero that still depends on the model) so backward stays valid.
        return hidden.sum() * 0.0, 0
    chunk_rows = chunk_rows or default_chunk_rows(weight.shape[0])
    compute_dtype = compute_dtype or hidden.dtype
    with torch.autocast(device_type=hidden.device.type, enabled=False):
        if torch.is_grad_enabled() and h.requires_grad:
            return _LinearCrossEntropy.apply(h, weight, t, chunk_rows, compute_dtype, compiled), n
        # Evaluation: the same chunked loss without computing gradients.
        fn = _fn(chunk_loss, compiled)
        h, w = h.to(compute_dtype), weight.to(compute_dtype)
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        for s in range(0, n, chunk_rows):
            total += fn(h[s : s + chunk_rows], w, t[s : s + chunk_rows])
        return total, n
