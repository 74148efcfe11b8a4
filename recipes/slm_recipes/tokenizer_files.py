"""The tokenizer of a trained model folder, copied from the base instead of re-saved. transformers 5 saves a
slow SentencePiece tokenizer as tokenizer.json only (no tokenizer.model), and llama.cpp's convert_hf_to_gguf.py
then builds another vocabulary from it (every piece's score -1000, other special-token keys): the GGUF of the
trained model would not tokenize like its base. Copying the base's own files keeps the vocabulary exact."""
import os
import shutil

TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "vocab.json", "merges.txt", "vocab.txt", "spiece.model",
                   "chat_template.jinja", "chat_template.json")


def copy_tokenizer(base, out, chat_template=None):
    """Copies the base's tokenizer files into `out`. `chat_template`: the template training used, written as
    chat_template.jinja when the base's files carry none (a template given to the recipe from elsewhere)."""
    copied = [f for f in TOKENIZER_FILES if os.path.isfile(os.path.join(base, f))]
    for f in copied:
        shutil.copyfile(os.path.join(base, f), os.path.join(out, f))
    if chat_template and not _has_template(base):
        with open(os.path.join(out, "chat_template.jinja"), "w", encoding="utf-8") as fh:
            fh.write(chat_template)
        copied.append("chat_template.jinja")
    return copied


def _has_template(base):
    if os.path.isfile(os.path.join(base, "chat_template.jinja")) or os.path.isfile(os.path.join(base, "chat_template.json")):
        return True
    import json

    try:
        with open(os.path.join(base, "tokenizer_config.json"), encoding="utf-8") as fh:
            return bool(json.load(fh).get("chat_template"))
    except (OSError, ValueError):
        return False
