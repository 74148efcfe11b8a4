"""Block influence computed independently of slm's recipe, for test/e2e/prune.test.ts: transformers' own
`output_hidden_states` on the same calibration tokens (a plain-text file tokenized whole, with the tokenizer's
BOS, cut into `samples` consecutive windows of `seq_len` tokens). BI_i = 1 - mean over tokens of
cos(h_i, h_{i+1}).

transformers gives the last entry of hidden_states after the model's final norm, not as the last block wrote
it; the final norm is replaced by the identity here so that entry is the last block's own output.

    python prune_reference_scores.py MODEL_DIR TEXT_FILE SAMPLES SEQ_LEN   → JSON list on stdout"""
import json
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

model_dir, text_file, samples, seq_len = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
tokenizer = AutoTokenizer.from_pretrained(model_dir)
with open(text_file, encoding="utf-8") as f:
    ids = tokenizer.encode(f.read(), add_special_tokens=True)
n = min(samples, len(ids) // seq_len)
windows = torch.tensor(ids[: n * seq_len]).view(n, seq_len)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
model.model.norm = torch.nn.Identity()
with torch.no_grad():
    hidden = model(input_ids=windows, output_hidden_states=True, use_cache=False).hidden_states
scores = [1.0 - torch.nn.functional.cosine_similarity(hidden[i], hidden[i + 1], dim=-1).double().mean().item()
          for i in range(len(hidden) - 1)]
print(json.dumps({"windows": n, "scores": scores}))
