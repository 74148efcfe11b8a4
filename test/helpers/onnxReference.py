"""What transformers itself gives for an exported model folder, for test/unit/onnxModel.test.ts to hold slm's
ONNX runtime against: chat templates (apply_chat_template), tokenization (tokenizer(text), special-token
text read literally), greedy answers (generate), log-likelihoods and llama-perplexity's chunked perplexity
computed from the PyTorch model's logits.

    python onnxReference.py <hf weights folder> <exported folder> <request.json>  → JSON on stdout
"""
import json
import math
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

hf_dir, export_dir, request_file = sys.argv[1:4]
req = json.load(open(request_file))
torch.set_num_threads(1)
# The exported folder's tokenizer (tokenizer.json + template), as a user of transformers would load it.
tok = AutoTokenizer.from_pretrained(export_dir)
model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
out = {}


def ids_of(enc):
    return list(enc["input_ids"] if isinstance(enc, dict) or hasattr(enc, "keys") else enc)


out["templates"] = [
    {
        "text": tok.apply_chat_template(c["messages"], tokenize=False, add_generation_prompt=c["generation"]),
        "ids": ids_of(tok.apply_chat_template(c["messages"], tokenize=True, add_generation_prompt=c["generation"])),
    }
    for c in req["conversations"]
]
out["raw"] = [tok(t)["input_ids"] for t in req["raw"]]
out["literal"] = [tok(t, add_special_tokens=False, split_special_tokens=True)["input_ids"] for t in req["raw"]]
out["decode"] = [tok.decode(ids, skip_special_tokens=True) for ids in req["decode"]]


@torch.no_grad()
def logits_of(ids):
    return model(torch.tensor([ids])).logits[0].double()


greedy = []
for q in req["greedy"]:
    # A question, or a whole conversation ending with the user's turn.
    messages = [{"role": "user", "content": q}] if isinstance(q, str) else q
    enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    g = model.generate(**enc, max_new_tokens=8, do_sample=False)
    greedy.append(tok.decode(g[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))
out["greedy"] = greedy

ll = []
for case in req["loglik"]:
    sums = []
    for cont in case["continuations"]:
        lp = torch.log_softmax(logits_of(case["prompt"] + cont), dim=-1)
        n = len(case["prompt"])
        sums.append(sum(lp[n - 1 + i, t].item() for i, t in enumerate(cont)))
    ll.append(sums)
out["loglik"] = ll

# llama-perplexity: BOS + the text read literally, floor(n / ctx) chunks, each chunk's first token set to
# BOS, the logits at positions ctx/2 … ctx-2 scored against the next token.
ctx = req["ppl_ctx"]
text = open(req["ppl_file"]).read()
if text.endswith("\n"):
    text = text[:-1]
tokens = [tok.bos_token_id] + tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
nll = []
for c in range(len(tokens) // ctx):
    chunk = tokens[c * ctx:(c + 1) * ctx]
    chunk[0] = tok.bos_token_id
    lp = torch.log_softmax(logits_of(chunk), dim=-1)
    first = ctx // 2
    nll += [-lp[p, chunk[p + 1]].item() for p in range(first, ctx - 1)]
out["ppl"] = {"ppl": math.exp(sum(nll) / len(nll)), "tokens": len(nll), "textTokens": len(tokens)}
print(json.dumps(out))
