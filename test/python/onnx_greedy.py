"""Greedy answers of an exported ONNX folder with Python onnxruntime's own InferenceSession and transformers'
tokenizer, independent of slm's runtime: the check tests run on `slm export` results.

    python test/python/onnx_greedy.py FOLDER FILE TASK.jsonl N   ->  {"correct": k, "n": N, "answers": [...]}

FILE is a name under FOLDER/onnx (model.onnx, model_q4.onnx…); TASK is chat JSONL (user question, assistant answer)."""
import json
import os
import sys

import numpy as np
import onnxruntime
from transformers import AutoTokenizer


def greedy(session, ids, eos, max_new=8):
    names = [o.name for o in session.get_outputs()]
    past = {i.name: np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32)
            for i in session.get_inputs() if i.name.startswith("past_key_values.")}
    seen, feed_ids, out = len(ids), list(ids), []
    for _ in range(max_new):
        feed = {"input_ids": np.array([feed_ids], np.int64), "attention_mask": np.ones((1, seen), np.int64),
                "position_ids": np.arange(seen - len(feed_ids), seen, dtype=np.int64)[None], **past}
        r = dict(zip(names, session.run(None, feed)))
        nxt = int(r["logits"][0, -1].argmax())
        if nxt in eos:
            break
        out.append(nxt)
        past = {k: r[k.replace("past_key_values", "present")] for k in past}
        feed_ids, seen = [nxt], seen + 1
    return out


def main(folder, file, task, n):
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with open(os.path.join(folder, "generation_config.json"), encoding="utf-8") as f:
        eos = json.load(f)["eos_token_id"]
    eos = set(eos if isinstance(eos, list) else [eos])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(os.path.join(folder, "onnx", file), options,
                                           providers=["CPUExecutionProvider"])
    with open(task, encoding="utf-8") as f:
        problems = [json.loads(line)["messages"] for line in f][:n]
    answers, correct = [], 0
    for messages in problems:
        ids = tokenizer.apply_chat_template(messages[:1], add_generation_prompt=True, tokenize=True,
                                            return_dict=True)["input_ids"]
        answer = tokenizer.decode(greedy(session, list(ids), eos), skip_special_tokens=True)
        answers.append(answer)
        correct += answer == messages[1]["content"]
    print(json.dumps({"correct": correct, "n": len(problems), "answers": answers}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
