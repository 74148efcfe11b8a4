"""Checks each exported file with onnxruntime before it is put in place: it must load, run a prefill and a
decode step with the KV cache (two rows, one left-padded), and give finite logits. For fp32 the logits must
also equal the torch model's within a tolerance: a trace that baked in a shape or a branch fails here instead
of answering wrongly later."""
import numpy as np
import torch

from ..errors import RecipeError

FP32_TOLERANCE = 1e-3  # relative to the largest |logit|: float32 reorderings give ~1e-6


def _torch_steps(model, ids, mask, steps):
    """Logits of a prefill and of `steps` one-token decode steps (greedy), as numpy, with the tokens fed."""
    with torch.no_grad():
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        logits, cache, fed = [out.logits.float().numpy()], out.past_key_values, []
        for _ in range(steps):
            nxt = out.logits[:, -1:].argmax(-1)
            fed.append(nxt)
            mask = torch.cat([mask, torch.ones_like(nxt)], -1)
            positions = mask.sum(-1, keepdim=True) - 1
            out = model(input_ids=nxt, attention_mask=mask, position_ids=positions, past_key_values=cache,
                        use_cache=True)
            logits.append(out.logits.float().numpy())
            cache = out.past_key_values
    return logits, fed


def _ort_steps(session, shape, ids, mask, fed):
    names = shape.output_names()
    past = {n: np.zeros((ids.shape[0], shape.kv_heads, 0, shape.head_dim), np.float32)
            for n in shape.input_names()[3:]}
    mask = mask.numpy().astype(np.int64)
    feed_ids = ids.numpy().astype(np.int64)
    positions = np.clip(mask.cumsum(-1) - 1, 0, None)
    logits = []
    for step in range(len(fed) + 1):
        feed = {"input_ids": feed_ids, "attention_mask": mask, "position_ids": positions, **past}
        out = dict(zip(names, session.run(None, feed)))
        logits.append(out["logits"].astype(np.float32))
        past = {n: out[n.replace("past_key_values", "present")] for n in past}
        if step < len(fed):
            feed_ids = fed[step].numpy().astype(np.int64)
            mask = np.concatenate([mask, np.ones_like(feed_ids)], -1)
            positions = mask.sum(-1, keepdims=True) - 1
    return logits


def check_file(path, dtype, model, shape, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types (Fail, InvalidGraph…)
        raise RecipeError(f"the exported {dtype} graph does not load in onnxruntime: {e}") from None
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, shape.vocab, (2, 5), generator=g)
    mask = torch.ones(2, 5, dtype=torch.long)
    mask[0, 0] = 0
    expected, fed = _torch_steps(model, ids, mask, steps=2)
    try:
        got = _ort_steps(session, shape, ids, mask, fed)
    except Exception as e:  # onnxruntime's own error types
        raise RecipeError(f"the exported {dtype} graph fails in onnxruntime: {str(e).splitlines()[0][:300]}") from None
    worst, scale = 0.0, 0.0
    for e, o in zip(expected, got):
        if not np.isfinite(o).all():
            raise RecipeError(f"the exported {dtype} graph gives non-finite logits")
        # Row 0's padded position has no defined output: compare only real positions.
        valid = np.ones(e.shape[:2], bool)
        if e.shape[1] == ids.shape[1]:
            valid[0, 0] = False
        worst = max(worst, float(np.abs(e - o)[valid].max()))
        scale = max(scale, float(np.abs(e)[valid].max()))
    relative = worst / max(scale, 1.0)
    if dtype == "fp32" and relative > FP32_TOLERANCE:
        raise RecipeError(f"the exported fp32 graph's logits differ from the torch model's by {worst:.3g} "
                          f"({relative:.2g} of the largest logit); this architecture does not trace correctly")
    return relative
