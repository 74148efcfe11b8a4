"""A random-weight Hugging Face Llama folder of a real model's shape, for timing the quantization recipes without
downloading anything (bench/quantize_methods.ts, test/gpu/quant_check.py).

    python bench/random_hf_llama.py --shape smollm2-135m --out DIR [--dtype float16|bfloat16|float32]

The tokenizer is the tiny-arith fixture's (SentencePiece, 320 pieces): its ids are all valid in the larger
vocabulary, so calibration text tokenizes as it would for a real model of that shape, only with shorter
pieces. What is timed (the decoder blocks) does not depend on which tokenizer made the ids.
"""
import argparse
import os
import shutil

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
TOKENIZER = os.path.join(ROOT, "test", "fixtures", "tiny-arith", "hf")
TOKENIZER_FILES = ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json")

# The shapes of the public configs (hidden, layers, intermediate, heads / kv heads, vocabulary, context).
SHAPES = {
    "smollm2-135m": dict(hidden_size=576, num_hidden_layers=30, intermediate_size=1536, num_attention_heads=9,
                         num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192,
                         tie_word_embeddings=True, rope_theta=100000.0),
    "llama-3.2-1b": dict(hidden_size=2048, num_hidden_layers=16, intermediate_size=8192, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072,
                         tie_word_embeddings=True, rope_theta=500000.0),
    # A few seconds on a laptop CPU: the GPU check's stand-in where there is no GPU.
    "small": dict(hidden_size=256, num_hidden_layers=4, intermediate_size=1024, num_attention_heads=8,
                  num_key_value_heads=2, vocab_size=4096, max_position_embeddings=2048,
                  tie_word_embeddings=True, rope_theta=10000.0),
}


def make(shape, out, dtype="float16", seed=0):
    """Writes the folder; returns (parameters, bytes of model.safetensors)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    s = dict(SHAPES[shape])
    rope_theta = s.pop("rope_theta")
    config = LlamaConfig(**s, hidden_act="silu", rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2,
                         pad_token_id=0, attention_bias=False, mlp_bias=False)
    config.rope_parameters = {"rope_theta": rope_theta, "rope_type": "default"}
    with torch.device("cpu"):
        model = LlamaForCausalLM(config)
    # The initializer draws the linears from N(0, 0.02) (initializer_range), a trained model's scale; norms are 1.
    model.to(getattr(torch, dtype))
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out)
    for f in TOKENIZER_FILES:
        shutil.copy(os.path.join(TOKENIZER, f), os.path.join(out, f))
    params = sum(p.numel() for p in model.parameters())
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out) if f.endswith(".safetensors"))
    return params, size


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", choices=sorted(SHAPES), required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    a = p.parse_args()
    n, b = make(a.shape, a.out, a.dtype)
    print(f"{a.shape}: {n / 1e6:.1f}M parameters, {b / 1e6:.0f} MB in {a.out}")
