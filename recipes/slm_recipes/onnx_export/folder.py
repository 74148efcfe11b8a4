"""The files beside onnx/: what transformers.js, Optimum and slm's ONNX runtime read from an ONNX folder.

  config.json             the model's config, plus "transformers.js_config" (use_external_data_format per file)
  generation_config.json  the source's, or one derived from the config (EOS, BOS, pad)
  tokenizer.json          written by transformers' fast tokenizer (converted from tokenizer.model if that is
                          all the source has), with tokenizer_config.json
  chat template           chat_template.jinja (as transformers 5 writes it) and, for readers that look only
                          there (transformers.js 3), the same text as tokenizer_config.json's "chat_template"."""
import json
import os

from ..errors import ConfigError

# Keys transformers writes into tokenizer_config.json about the machine that saved it, not about the tokenizer.
_LOCAL_KEYS = ("is_local", "local_files_only", "name_or_path")


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def _write_json(path, data):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")


def write_tokenizer(source, out):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError, ImportError) as e:
        raise ConfigError(f"model: cannot load the tokenizer of {source}: {e}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"model: the tokenizer of {source} has no fast (tokenizers) version, so no "
                          "tokenizer.json can be written for it")
    tokenizer.save_pretrained(out)
    if not os.path.isfile(os.path.join(out, "tokenizer.json")):
        raise ConfigError(f"model: transformers wrote no tokenizer.json for {source}")
    cfg_path = os.path.join(out, "tokenizer_config.json")
    cfg = _read_json(cfg_path) or {}
    for key in _LOCAL_KEYS:
        cfg.pop(key, None)
    template = tokenizer.chat_template
    if isinstance(template, str) and "chat_template" not in cfg:
        cfg["chat_template"] = template
    _write_json(cfg_path, cfg)
    return {"chat_template": isinstance(template, str), "vocab": len(tokenizer)}


def write_configs(model, source, out, external_files):
    """config.json (with transformers.js_config merged over an earlier export's) and generation_config.json."""
    from transformers import GenerationConfig

    model.config.save_pretrained(out)
    cfg_path = os.path.join(out, "config.json")
    cfg = _read_json(cfg_path)
    js = dict(cfg.get("transformers.js_config") or {})
    ext = dict(js.get("use_external_data_format") or {})
    ext.update({name: 1 for name in external_files})
    if ext:
        js["use_external_data_format"] = ext
    if js:
        cfg["transformers.js_config"] = js
    _write_json(cfg_path, cfg)
    try:
        gen = GenerationConfig.from_pretrained(source)
    except OSError:
        gen = GenerationConfig.from_model_config(model.config)
    gen.save_pretrained(out)


def earlier_external_files(out_dir):
    """use_external_data_format of an existing export (kept when dtypes are added to it)."""
    cfg = _read_json(os.path.join(out_dir, "config.json")) or {}
    ext = (cfg.get("transformers.js_config") or {}).get("use_external_data_format") or {}
    return [name for name, chunks in ext.items() if chunks]
