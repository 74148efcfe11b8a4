"""The training step that the recipe runs and bench/finetune_gpu.py measures: loss (chunked over the vocabulary
where the model allows it), backward, gradient clipping, fused AdamW, learning-rate schedule; and the memory
settings it runs under (full or selective activation checkpointing, optional torch.compile of the layers)."""
import functools
import math

import torch

from .chunked_ce import IGNORE, linear_cross_entropy_sum
from .kd_loss import kd_loss_sum

KD_KEYS = ("kd_ids", "kd_logprobs", "kd_mask")

# Architectures whose causal-LM head is exactly `lm_head(final_hidden_states)`; others (logit soft-capping,
# logit scaling, custom heads) use the model's own forward and the ordinary loss.
_PLAIN_HEAD_TYPES = {"llama", "mistral", "qwen2", "qwen3", "phi3", "gemma", "olmo2", "smollm3"}
_LOGIT_POSTPROCESSING = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def body_and_head(causal_lm):
    """(decoder body, output projection) of a transformers causal LM, or None when the head is not a plain,
    frozen, bias-free linear layer applied to the body's last hidden state."""
    cfg = causal_lm.config
    if getattr(cfg, "model_type", None) not in _PLAIN_HEAD_TYPES:
        return None
    if any(getattr(cfg, k, None) not in (None, 1, 1.0) for k in _LOGIT_POSTPROCESSING):
        return None
    head = causal_lm.get_output_embeddings()
    body = getattr(causal_lm, causal_lm.base_model_prefix, None)
    if type(head) is not torch.nn.Linear or head.bias is not None or head.weight.requires_grad or body is None:
        return None
    return body, head


class CausalLMLoss:
    """loss_fn(batch) → (sum of token losses as fp32, number of loss tokens). `chunked` says which path runs.
    With `kd_alpha` set, a batch that carries the teacher's distributions (data.collate's kd_* keys) gets the
    distillation loss of kd_loss.py on its labelled positions instead of cross-entropy alone."""

    def __init__(self, causal_lm, compute_dtype, chunked=True, compiled=False, kd_alpha=None):
        self.kd_alpha = kd_alpha
        self.causal_lm = causal_lm
        self.compute_dtype = compute_dtype
        self.compiled = compiled
        self.parts = body_and_head(causal_lm) if chunked else None
        self.chunked = self.parts is not None

    def __call__(self, batch):
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "n_loss", *KD_KEYS)}
        labels = batch["labels"]
        if self.kd_alpha is not None and "kd_ids" in batch:
            return self._distill(inputs, batch)
        if self.chunked:
            body, head = self.parts
            out = body(**inputs, use_cache=False)
            hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
            return linear_cross_entropy_sum(hidden, head.weight, labels, compute_dtype=self.compute_dtype,
                                            compiled=self.compiled)
        logits = self.causal_lm(**inputs, use_cache=False).logits
        t = labels[:, 1:]
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(), t.flatten(), ignore_index=IGNORE, reduction="sum")
        return loss, int((t != IGNORE).sum())

    def _distill(self, inputs, batch):
        """Logits at the labelled positions only (the answer tokens: few, so their [rows × vocab] logits are
        small), then kd_loss_sum over them."""
        keep = batch["labels"][:, 1:] != IGNORE
        if self.parts:
            body, head = self.parts
            out = body(**inputs, use_cache=False)
            hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
            logits = head(hidden[:, :-1][keep])
        else:
            logits = self.causal_lm(**inputs, use_cache=False).logits[:, :-1][keep]
        shifted = {k: batch[k][:, 1:][keep] for k in KD_KEYS}
        loss = kd_loss_sum(logits, batch["labels"][:, 1:][keep], shifted["kd_ids"], shifted["kd_logprobs"],
                           shifted["kd_mask"], self.kd_alpha)
        return loss, int(keep.sum())


def keep_input_dtype(peft_model):
    """PEFT casts each LoRA layer's input to the adapter weights' dtype (fp32 LoRA weights on a bf16 base:
    a full fp32 copy of every projection's input, which autocast then casts back to bf16 for the matmul).
    Under autocast that round trip only costs memory bandwidth, so it is switched off; the matmuls still run
    in bf16 and the LoRA weights and their gradients stay fp32."""
    n = 0
    for module in peft_model.modules():
        if hasattr(module, "lora_A"):
            module.cast_input_dtype_enabled = False
            n += 1
    return n


# --- activation memory ------------------------------------------------------------------------------------

def _attention_ops():
    names = ("_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
             "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu",
             "_flash_attention_forward", "_efficient_attention_forward")
    return {getattr(torch.ops.aten, n).default for n in names if hasattr(torch.ops.aten, n)}


def _selective_policy(attention_ops, ctx, op, *args, **kwargs):
    """Selective activation checkpointing: keep what is expensive to recompute, recompute what is cheap.
    Saved: attention outputs and the products of the frozen projections (and LoRA's down-projections A·x,
    which are tiny: rank values per token). Recomputed in backward: norms, rotary embeddings, SiLU·up,
    residual adds, dtype casts, and LoRA's up-projections B·(A·x), whose inner dimension is the rank — cheap
    to redo but as wide as the layer output to keep."""
    from torch.utils.checkpoint import CheckpointPolicy

    if op in attention_ops:
        return CheckpointPolicy.MUST_SAVE
    if op is torch.ops.aten.mm.default or op is torch.ops.aten.addmm.default:
        a, b = (args[0], args[1]) if op is torch.ops.aten.mm.default else (args[1], args[2])
        k, n = a.shape[-1], b.shape[-1]
        if k <= 256 and n >= 4 * k:
            return CheckpointPolicy.PREFER_RECOMPUTE
        return CheckpointPolicy.MUST_SAVE
    return CheckpointPolicy.PREFER_RECOMPUTE


def selective_context():
    from torch.utils.checkpoint import create_selective_checkpoint_contexts

    return create_selective_checkpoint_contexts(functools.partial(_selective_policy, _attention_ops()))


def set_checkpointing(causal_lm, mode):
    """mode: "none", "full" (recompute each decoder layer in backward) or "selective" (see _selective_policy).
    Non-reentrant checkpointing, so frozen embeddings need no input-grad hooks."""
    if mode == "none":
        return
    kwargs = {"use_reentrant": False}
    if mode == "selective":
        kwargs["context_fn"] = selective_context
    causal_lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    causal_lm.config.use_cache = False


def compile_layers(causal_lm):
    """torch.compile each decoder layer (fuses norms, rotary, SiLU·up and LoRA's elementwise work). All layers
    share one compiled graph; a new sequence length recompiles once, after which shapes are dynamic."""
    body = getattr(causal_lm, causal_lm.base_model_prefix, causal_lm)
    layers = getattr(body, "layers", None)
    if layers is None:
        body.compile()
        return 1
    for layer in layers:
        layer.compile()
    return len(layers)


def to_device(batch, device):
    """Lists from data.collate → tensors on `device`, plus n_loss (loss tokens after the shift), counted on the
    host so that the step needs no device synchronisation to normalise its loss."""
    n_loss = sum(1 for row in batch["labels"] for t in row[1:] if t != IGNORE)
    dtypes = {"kd_logprobs": torch.float32, "kd_mask": torch.bool}
    out = {k: torch.tensor(v, dtype=dtypes.get(k, torch.long), device=device) for k, v in batch.items()}
    out["n_loss"] = n_loss
    return out


# --- optimizer and schedule -------------------------------------------------------------------------------

def make_optimizer(params, lr, device_type):
    # Fused AdamW: one kernel for all parameters instead of several per tensor (CUDA only).
    extra = {"fused": True} if device_type == "cuda" else {}
    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, **extra)


def make_scheduler(optimizer, total_steps, warmup_steps):
    """Linear warm-up to the peak rate (reached at the last warm-up step), then linear decay that reaches zero
    just after the last step."""
    span = max(1, total_steps - warmup_steps + (1 if warmup_steps else 0))

    def factor(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / span)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def warmup_steps_for(total_steps, ratio):
    return min(total_steps, max(1, math.ceil(total_steps * ratio))) if ratio > 0 else 0


def train_step(loss_fn, micro_batches, params, optimizer, scheduler, autocast, max_grad_norm=1.0, n_total=None,
               sync=None):
    """One optimizer step over `micro_batches` (gradient accumulation). The loss is normalised by the loss
    tokens of the whole step (`n_total`, by default those of `micro_batches`), so accumulation gives the same
    gradient as one big batch. With several processes, `sync(params, loss_sum)` sums the gradients and the loss
    of all of them (this process's micro-batches may be none) and returns the loss sum; `n_total` then counts
    the loss tokens of every process. Returns tensors (mean loss, grad norm) without synchronising; the caller
    reads them when it logs."""
    if n_total is None:
        n_total = sum(mb["n_loss"] for mb in micro_batches)
    total = None
    for mb in micro_batches:
        with autocast():
            loss_sum, _ = loss_fn(mb)
        (loss_sum / n_total).backward()
        total = loss_sum.detach() if total is None else total + loss_sum.detach()
    if sync is not None:
        total = sync(params, total)
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return total / n_total, grad_norm
