"""Healing: a short full fine-tune of the pruned model, all weights trainable, to win back what the cut cost.

- mode "data": next-token loss on a dataset (chat JSONL with the loss on the assistant's turns, as slm finetune
  trains; plain text with the loss on every token);
- mode "distill": KL(unpruned ‖ pruned) over the whole vocabulary at temperature 1 on every calibration token,
  so the pruned model learns to predict what the model it was cut from predicted."""
import random
import time

import torch

from .. import events as ev
from ..data import Encoder, Example, collate, encode_all, read_jsonl
from ..errors import ConfigError
from ..quant.calibration import _text_tokens


def _data_batches(heal, cfg, tokenizer, max_positions):
    """A function i → batch {input_ids, labels, attention_mask} (tensors) cycling through the heal data."""
    if heal.data.format == "chat-jsonl":
        examples, _ = encode_all(read_jsonl(heal.data.file), Encoder(tokenizer), min(cfg.seq_len, max_positions))
        rows = examples
    else:
        # Plain text: the whole file's tokens in consecutive windows of seq_len, every token learned.
        stream = [t for ids in _text_tokens(heal.data.file, tokenizer) for t in ids]
        n = min(cfg.seq_len, max_positions)
        rows = [Example(stream[i:i + n], stream[i:i + n]) for i in range(0, len(stream) - 1, n)]
        if not rows:
            raise ConfigError(f"heal: {heal.data.file} holds no text to train on")
    order = list(range(len(rows)))
    random.Random(cfg.seed).shuffle(order)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def batch(i):
        picked = [rows[order[(i * heal.batch_size + j) % len(rows)]] for j in range(heal.batch_size)]
        return {k: torch.tensor(v, dtype=torch.long) for k, v in collate(picked, pad).items()}

    return batch, len(rows)


def heal(model, teacher, windows, cfg, tokenizer, max_positions, device):
    """Trains `model` in place. Returns {mode, steps, lr, batch_size, first_loss, last_loss, seconds, examples}."""
    h = cfg.heal
    torch.manual_seed(cfg.seed)
    if h.mode == "data":
        batch_of, examples = _data_batches(h, cfg, tokenizer, max_positions)
    else:
        examples = windows.shape[0]
        gen = torch.Generator().manual_seed(cfg.seed)

        def batch_of(i):
            return {"input_ids": windows[torch.randint(0, examples, (h.batch_size,), generator=gen)]}
    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=h.lr, weight_decay=0.0)
    started = time.monotonic()
    losses = []
    for step in range(h.steps):
        b = {k: v.to(device) for k, v in batch_of(step).items()}
        if h.mode == "data":
            loss = model(**b, use_cache=False).loss
        else:
            with torch.no_grad():
                target = torch.log_softmax(teacher(input_ids=b["input_ids"], use_cache=False).logits.float(), dim=-1)
            student = torch.log_softmax(model(input_ids=b["input_ids"], use_cache=False).logits.float(), dim=-1)
            loss = torch.nn.functional.kl_div(student.flatten(0, 1), target.flatten(0, 1), log_target=True,
                                              reduction="batchmean")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        ev.metric("loss", losses[-1], step=step + 1)
        elapsed = time.monotonic() - started
        ev.progress("prune:heal", "steps", step + 1, h.steps, (step + 1) / elapsed if elapsed > 0 else None)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    tail = losses[-max(1, len(losses) // 10):]
    return {"mode": h.mode, "steps": h.steps, "lr": h.lr, "batch_size": h.batch_size, "examples": examples,
            "first_loss": losses[0], "last_loss": sum(tail) / len(tail), "seconds": time.monotonic() - started}
