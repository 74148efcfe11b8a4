"""Calibration data → token windows [n, seq_len]: the file's token stream (text tokenized as it is, or canonical
chat JSONL rendered with the tokenizer's chat template) concatenated and cut into consecutive windows of seq_len
tokens; the first `samples` windows are used. Only as much of the file is read as those windows need."""
import json

from .. import events as ev
from ..errors import ConfigError

# Text is tokenized in pieces of about this many characters, cut at line ends, so a large file is neither read
# nor tokenized further than the windows need.
_TEXT_PIECE = 1 << 20


def capped_seq_len(seq_len, max_positions):
    if max_positions and seq_len > max_positions:
        ev.log("warn", f"seq_len {seq_len} is longer than the model's context; using {max_positions}")
        return max_positions
    return seq_len


def load_calibration(cfg, tokenizer, max_positions=None):
    """LongTensor [n, seq_len] from cfg.calibration ({file, format}), cfg.samples and cfg.seq_len; seq_len is
    capped at max_positions (the model's max_position_embeddings). Fewer than `samples` windows when the data is
    short (a warning says so); data shorter than one window gives one window of all of it."""
    import torch

    seq_len = capped_seq_len(cfg.seq_len, max_positions)
    need = cfg.samples * seq_len
    reader = _chat_tokens if cfg.calibration.format == "chat-jsonl" else _text_tokens
    stream = []
    for ids in reader(cfg.calibration.file, tokenizer):
        stream.extend(ids)
        if len(stream) >= need:
            break
    if len(stream) < 2:
        raise ConfigError(f"calibration: {cfg.calibration.file} holds no text to calibrate on")
    if len(stream) < seq_len:
        ev.log("warn", f"calibration data has only {len(stream)} tokens, fewer than seq_len {seq_len}: "
                       f"using one window of {len(stream)} tokens")
        seq_len = len(stream)
    n = min(cfg.samples, len(stream) // seq_len)
    if n < cfg.samples:
        ev.log("warn", f"calibration data gives {n} windows of {seq_len} tokens, fewer than the {cfg.samples} "
                       "samples asked for")
    return torch.tensor(stream[: n * seq_len], dtype=torch.long).view(n, seq_len)


def _text_tokens(path, tokenizer):
    first = True
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        while True:
            piece = f.read(_TEXT_PIECE)
            if not piece:
                return
            piece += f.readline()  # end the piece at a line end
            # The stream starts the way the tokenizer starts a text (BOS for most), once.
            yield list(tokenizer.encode(piece, add_special_tokens=first, verbose=False))
            first = False


def _chat_tokens(path, tokenizer):
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError("calibration: chat JSONL needs a chat template, and the model's tokenizer has none; "
                          "give plain text instead")
    eos = getattr(tokenizer, "eos_token_id", None)
    with open(path, encoding="utf-8-sig") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"calibration: {path}:{n}: not JSON ({e.msg})") from None
            if isinstance(rec, dict) and isinstance(rec.get("messages"), list):
                text = tokenizer.apply_chat_template(rec["messages"], tokenize=False)
                # The rendered text already holds the template's special tokens (BOS and all).
                yield list(tokenizer.encode(text, add_special_tokens=False, verbose=False))
            elif isinstance(rec, dict) and isinstance(rec.get("text"), str):
                ids = list(tokenizer.encode(rec["text"], add_special_tokens=True, verbose=False))
                if eos is not None and (not ids or ids[-1] != eos):
                    ids.append(eos)
                yield ids
            else:
                raise ConfigError(f"calibration: {path}:{n}: expected {{\"messages\": [...]}} or {{\"text\": ...}}")
