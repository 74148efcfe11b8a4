"""Weight quantization of Hugging Face models (GPTQ, AWQ, round-to-nearest) and their checkpoint formats."""
