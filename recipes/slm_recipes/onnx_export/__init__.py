"""`slm export --format onnx`: a Hugging Face causal LM as an ONNX folder in the layout Optimum and transformers.js
use (config.json, tokenizer.json, chat template, generation_config.json, onnx/model<suffix>.onnx per dtype)."""
