"""Training checkpoints: <output_dir>/checkpoints/step-N/ holds
  adapter/    the PEFT adapter at step N (usable on its own); none for a full fine-tune, whose weights are all
              in state.pt
  state.pt    trainable weights (exact fp32), optimizer, LR schedule, step, RNG states, counters, fingerprint
Resuming restores all of it; the data order needs no storing because each epoch's order is a function of
(seed, epoch) and the step number says where in the epoch training stopped."""
import os
import random
import re
import shutil

import torch

from .errors import ConfigError
from .fsutil import atomic_dir

_STEP_DIR = re.compile(r"^step-(\d+)$")
KEEP = 2


def checkpoints_dir(output_dir):
    return os.path.join(output_dir, "checkpoints")


def latest(output_dir):
    """(path, step) of the newest complete checkpoint, or None."""
    root = checkpoints_dir(output_dir)
    if not os.path.isdir(root):
        return None
    found = []
    for name in os.listdir(root):
        m = _STEP_DIR.match(name)
        if m and os.path.isfile(os.path.join(root, name, "state.pt")):
            found.append((int(m.group(1)), os.path.join(root, name)))
    if not found:
        return None
    step, path = max(found)
    return path, step


def _rng_state():
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state):
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(output_dir, peft_model, optimizer, scheduler, step, counters, fingerprint, adapter=True):
    """`adapter`: also write the PEFT adapter folder (False for a full fine-tune: its weights are in state.pt)."""
    root = checkpoints_dir(output_dir)
    target = os.path.join(root, f"step-{step}")
    with atomic_dir(target) as tmp:
        if adapter:
            peft_model.save_pretrained(os.path.join(tmp, "adapter"))
        trainable = {n: p.detach().to("cpu", copy=True) for n, p in peft_model.named_parameters() if p.requires_grad}
        torch.save({"step": step, "trainable": trainable, "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "rng": _rng_state(), "counters": counters,
                    "fingerprint": fingerprint}, os.path.join(tmp, "state.pt"))
    # Keep the newest few; older ones only cost disk.
    steps = sorted(int(m.group(1)) for m in (_STEP_DIR.match(n) for n in os.listdir(root)) if m)
    for old in steps[:-KEEP]:
        shutil.rmtree(os.path.join(root, f"step-{old}"), ignore_errors=True)
    return target


def load(path, peft_model, optimizer, scheduler, fingerprint):
    # Written by this recipe into the user's own output folder; it holds Python RNG state and optimizer
    # dicts besides tensors, hence a full unpickle.
    state = torch.load(os.path.join(path, "state.pt"), map_location="cpu", weights_only=False)
    diff = sorted(k for k in set(fingerprint) | set(state["fingerprint"])
                  if fingerprint.get(k) != state["fingerprint"].get(k))
    if diff:
        raise ConfigError(f"resume: the checkpoint in {path} was made with different settings ({', '.join(diff)}); "
                          "run again with the same settings, or without resume to start over")
    params = dict(peft_model.named_parameters())
    with torch.no_grad():
        for name, value in state["trainable"].items():
            if name not in params:
                raise ConfigError(f"resume: checkpoint parameter {name} does not exist in the model")
            params[name].copy_(value)
    # The device may change between runs (cpu ↔ cuda): keep this run's choice of fused kernels.
    fused = [g.get("fused") for g in optimizer.param_groups]
    optimizer.load_state_dict(state["optimizer"])
    for g, f in zip(optimizer.param_groups, fused):
        g["fused"] = f
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"])
    return state["step"], state["counters"]


def clear(output_dir):
    shutil.rmtree(checkpoints_dir(output_dir), ignore_errors=True)
