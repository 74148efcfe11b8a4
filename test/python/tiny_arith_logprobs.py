"""Reference log-probabilities of the tiny-arith fixture from its Hugging Face weights, for
test/e2e/nativeLogprobs.test.ts: an independent computation (torch, float32) of ln p(next token) and the
most likely token at every position of the given token ids. Reads {"hf": dir, "tokens": [...]} on stdin,
writes {"logprobs": [...], "tops": [...]} on stdout."""
import json
import sys

import torch
from transformers import AutoModelForCausalLM

torch.set_num_threads(1)
req = json.load(sys.stdin)
model = AutoModelForCausalLM.from_pretrained(req["hf"], dtype=torch.float32)
model.eval()
ids = torch.tensor([req["tokens"]], dtype=torch.long)
with torch.no_grad():
    logits = model(ids).logits[0].double()
logp = torch.log_softmax(logits, dim=-1)
targets = ids[0, 1:]
out = {
    "logprobs": logp[:-1].gather(1, targets[:, None])[:, 0].tolist(),
    "tops": logp[:-1].argmax(dim=-1).tolist(),
}
json.dump(out, sys.stdout)
