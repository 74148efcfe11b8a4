"""Loading the base model and tokenizer and attaching LoRA adapters (transformers + PEFT)."""
import torch

from .deps import require
from .errors import ConfigError, RecipeError


def pick_device(requested):
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for, but torch sees no CUDA GPU")
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(requested)


def compute_dtype(device):
    """bf16 autocast on GPUs that support it (frozen base weights stored in bf16 too); fp32 elsewhere."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_tokenizer(path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token_id is None:
        # Padding positions carry no loss and are masked out; any id will do, EOS is the usual choice.
        tok.pad_token = tok.eos_token
    return tok


def load_base(path, device, dtype, qlora=False):
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": dtype, "attn_implementation": "sdpa"}
    if qlora:
        require(["bitsandbytes"], "qlora")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype)
        kwargs["device_map"] = {"": device.index or 0}
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        raise RecipeError(f"could not load the base model from {path}: {e}") from None
    if qlora:
        from peft import prepare_model_for_kbit_training

        # Casts norms/embeddings to fp32 for stable 4-bit training; checkpointing is set up separately.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    else:
        model.to(device)
    model.config.use_cache = False
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def apply_lora(model, rank, alpha, dropout, target_modules):
    """Wraps the model with LoRA adapters. "all-linear" is PEFT's shorthand for every linear layer except the
    output head."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules,
                     bias="none", task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, cfg)
    except ValueError as e:
        # e.g. "Target modules {...} not found in the base model"
        raise ConfigError(f"target_modules: {e}") from None


def make_all_trainable(model):
    """Full fine-tuning: every weight learns (load_base froze them all for LoRA)."""
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def trainable_parameters(model):
    return [p for p in model.parameters() if p.requires_grad]
