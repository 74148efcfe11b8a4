"""Token-level knowledge distillation loss (Hinton et al. 2015), from the teacher's top-K log-probabilities.

At each answer token whose teacher entry lines up (teacher.align), with the teacher's top-K ids k₁…k_K and
log-probs ℓ₁…ℓ_K (of its full softmax at temperature 1):

    p_T(k_j) = exp(ℓ_j) / Σ_i exp(ℓ_i)                  the teacher renormalised over its K tokens
    KD       = Σ_j p_T(k_j) · (log p_T(k_j) − log q_S(k_j))   forward KL(p_T ‖ q_S)
    loss     = kd_alpha · KD + (1 − kd_alpha) · CE

where q_S is the student's FULL softmax over the vocabulary at temperature 1 (not renormalised over the K ids).
Why the full one: renormalising the student too would make the loss blind to the student's mass outside the
K ids (with K = 1 it would be identically zero); against the full softmax, the KL is zero only when the student
puts exactly the teacher's renormalised distribution on the K ids and nothing elsewhere, and with K = 1 it is
the cross-entropy of the teacher's token. Other answer tokens (no teacher entry) get CE alone."""
import torch


def kd_loss_sum(logits, targets, kd_ids, kd_logprobs, kd_mask, kd_alpha):
    """Sum over rows of the mixed loss above. logits [n, vocab] (any float dtype; computed in fp32); targets [n]
    (the label tokens); kd_ids [n, K] long; kd_logprobs [n, K] with -inf for padded columns; kd_mask [n] bool
    (rows with a teacher entry). Returns a 0-d fp32 tensor."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    ce = -logp.gather(1, targets[:, None]).squeeze(1)
    teacher_lp = torch.log_softmax(kd_logprobs.float(), dim=-1)  # renormalised over the K ids
    # Padded columns (-inf) and rows without a teacher (all -inf, NaN after the softmax) carry no mass: 0 · log 0
    # is 0, and zeroing them before the product keeps NaN out of the gradient as well as the value.
    valid = torch.isfinite(teacher_lp)
    teacher_lp = torch.where(valid, teacher_lp, torch.zeros_like(teacher_lp))
    p_t = torch.where(valid, teacher_lp.exp(), torch.zeros_like(teacher_lp))
    kl = (p_t * (teacher_lp - logp.gather(1, kd_ids))).sum(dim=1)
    per_row = torch.where(kd_mask, kd_alpha * kl + (1.0 - kd_alpha) * ce, ce)
    return per_row.sum()
