"""The plain Python onnxruntime baseline for `slm bench` on an ONNX model (bench/onnx_runtime.ts runs both).

    python bench/onnx_loop.py --model DIR [--dtype fp32] [--threads 1] [-p 512] [-n 128] [-r 5]

DIR is an ONNX model folder (onnx/model*.onnx, transformers.js's layout; --dtype picks the file as slm does).
It measures what llama-bench and `slm bench` measure, with nothing but `InferenceSession.run`:

- ppN: one run of N random prompt tokens on an empty KV cache (the graph returns the logits of every position;
  slm's runtime runs the same graph, so both pay that alike);
- tgN: N runs of one random token each, each feeding the previous run's `present.*` back as `past_key_values.*`;
  no sampling (llama-bench samples nothing either);
- one untimed warm-up of each test, then each repetition on an empty cache; tokens/s = N / seconds of the
  repetition; the mean and the sample standard deviation (n - 1) over the repetitions.

The session: `intra_op_num_threads` = --threads, one inter-op thread, sequential execution, all graph
optimisations, the CPU provider. Prints one JSON object on stdout: {"pp": {...}, "tg": {...}, "settings": {...}}.
"""
import argparse
import json
import os
import statistics
import time

import numpy as np
import onnxruntime as ort

# transformers.js's file suffix of each dtype (src/backends/onnx/layout.ts).
SUFFIX = {"fp32": "", "fp16": "_fp16", "q8": "_quantized", "int8": "_int8", "uint8": "_uint8", "q4": "_q4",
          "q4f16": "_q4f16", "bnb4": "_bnb4"}
NP_TYPE = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


class Loop:
    def __init__(self, path, threads):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        t0 = time.perf_counter()
        self.session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.load_ms = (time.perf_counter() - t0) * 1000
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        self.past = sorted((n for n in self.inputs if n.startswith("past_key_values.")), key=_layer_order)
        self.outputs = ["logits"] + ["present." + n[len("past_key_values."):] for n in self.past]
        first = self.inputs[self.past[0]]
        # [batch_size, kv_heads, past_sequence_length, head_dim]: kv heads and head size are static in the export.
        self.kv_heads, self.head_dim = first.shape[1], first.shape[3]
        self.past_type = NP_TYPE[first.type]
        self.ids_type = NP_TYPE[self.inputs["input_ids"].type]
        self.vocab = self.session.get_outputs()[0].shape[2]
        if not isinstance(self.vocab, int):
            raise SystemExit("the logits' vocabulary axis is not static; cannot draw random tokens")

    def empty_cache(self):
        return [np.zeros((1, self.kv_heads, 0, self.head_dim), dtype=self.past_type) for _ in self.past]

    def run(self, tokens, cache, past_len):
        n = len(tokens)
        feeds = {"input_ids": np.asarray([tokens], dtype=self.ids_type),
                 "attention_mask": np.ones((1, past_len + n), dtype=np.int64)}
        if "position_ids" in self.inputs:
            feeds["position_ids"] = np.arange(past_len, past_len + n, dtype=np.int64)[None, :]
        feeds.update(zip(self.past, cache))
        out = self.session.run(self.outputs, feeds)
        return out[1:]

    def pp(self, tokens):
        t0 = time.perf_counter()
        self.run(tokens, self.empty_cache(), 0)
        return time.perf_counter() - t0

    def tg(self, tokens):
        cache = self.empty_cache()
        t0 = time.perf_counter()
        for i, t in enumerate(tokens):
            cache = self.run([t], cache, i)
        return time.perf_counter() - t0


def _layer_order(name):
    _, layer, kind = name.split(".")
    return int(layer), kind != "key"


def test(fn, n, reps, rng, vocab):
    if n == 0:
        return None
    fn(rng.integers(0, vocab, n).tolist())  # warm-up, untimed
    samples = [n / fn(rng.integers(0, vocab, n).tolist()) for _ in range(reps)]
    return {"tokens": n, "repetitions": reps, "samples": samples, "mean": statistics.fmean(samples),
            "stddev": statistics.stdev(samples) if reps > 1 else 0.0}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--dtype", default="fp32", choices=sorted(SUFFIX))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("-p", type=int, default=512)
    p.add_argument("-n", type=int, default=128)
    p.add_argument("-r", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    path = os.path.join(a.model, "onnx", f"model{SUFFIX[a.dtype]}.onnx")
    loop = Loop(path, a.threads)
    rng = np.random.default_rng(a.seed)
    result = {"pp": test(loop.pp, a.p, a.r, rng, loop.vocab), "tg": test(loop.tg, a.n, a.r, rng, loop.vocab),
              "settings": {"file": path, "threads": a.threads, "onnxruntime": ort.__version__, "load_ms": loop.load_ms}}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
