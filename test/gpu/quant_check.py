"""GPU checks of slm's GPTQ and AWQ recipes (recipes/quantize_hf.py) on a Llama-3.2-1B-shaped model with random
weights (run by test/gpu/run.sh; needs only python3 with torch, transformers and safetensors; no node, no network).

On a CUDA GPU each method quantizes the 1B shape (16 blocks, hidden 2048, vocabulary 128256) with the recipe's
defaults (128 windows of 512 tokens, 4-bit, group size 128) and prints its time and peak GPU memory, which must
stay below the size of the whole model: the recipe moves one decoder block at a time to the device. Without a
GPU the same checks run on a small shape on the CPU (seconds), so the script is exercised anywhere.

Checks, each reported PASS / FAIL / SKIP by name:
  stack         torch, transformers, safetensors import; which device they see
  model         the random-weight model folder (bench/random_hf_llama.py), float16, the fixture's tokenizer
  gptq          method gptq: exit 0, a GPTQ checkpoint (qweight/qzeros/scales/g_idx, quantization_config)
  awq           method awq: exit 0, an AWQ GEMM checkpoint (qweight/qzeros/scales, quantization_config)
  gptq-memory   the GPTQ run's peak GPU memory below the whole model's bytes (SKIP without a GPU)
  awq-memory    the same for AWQ
Writes quant_checks.json (and each run's events) to $SLM_TEST_OUT, else $OUT, else a temp folder.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

from checks import Checks, Skip, check, has_cuda  # test/gpu/checks.py: the harness both check scripts share

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = os.path.join(ROOT, "test", "fixtures", "tiny-arith")
sys.path.insert(0, os.path.join(ROOT, "bench"))
PY = sys.executable
OUT = os.environ.get("SLM_TEST_OUT") or os.environ.get("OUT") or tempfile.mkdtemp(prefix="slm-gpu-test-")
WORK = tempfile.mkdtemp(prefix="slm-gpu-quant-")
# Chat JSONL, rendered with the fixture tokenizer's template: ~110k tokens, more than 128 × 512.
CALIBRATION = {"file": os.path.join(FIX, "data", "add-train.jsonl"), "format": "chat-jsonl"}


CUDA = has_cuda()
SHAPE = "llama-3.2-1b" if CUDA else "small"
# The recipe's defaults on a GPU; fewer, shorter windows on a CPU, where this only proves the script runs.
CALIB = dict(samples=128, seq_len=512) if CUDA else dict(samples=8, seq_len=128)



def run_recipe(cfg, record):
    """Runs recipes/quantize_hf.py; saves its events to OUT/record; returns (exit code, events, stderr tail)."""
    cfg_path = os.path.join(WORK, f"{record}.config.json")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    proc = subprocess.run([PY, os.path.join(ROOT, "recipes", "quantize_hf.py"), "--config", cfg_path],
                          capture_output=True, text=True)
    with open(os.path.join(OUT, record), "w") as f:
        f.write(proc.stdout)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return proc.returncode, events, proc.stderr[-3000:]


def gib(n):
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


# --- checks -------------------------------------------------------------------------------------------------

def c_stack():
    try:
        import safetensors  # noqa: F401
        import torch
        import transformers
    except ImportError as e:
        raise AssertionError(f"missing: {e.name}") from None
    where = f"CUDA {torch.cuda.get_device_name(0)}" if CUDA else "no CUDA GPU: CPU with the small shape"
    return f"torch {torch.__version__}, transformers {transformers.__version__}; {where}"


def c_model(state):
    from random_hf_llama import make

    state["model"] = os.path.join(WORK, SHAPE)
    params, size = make(SHAPE, state["model"], "float16")
    state["model_bytes"] = size
    return f"{SHAPE}: {params / 1e6:.0f}M parameters, {gib(size)} in float16"


def c_quantize(state, method):
    out = os.path.join(WORK, f"{method}-4bit")
    cfg = {"task": "quantize", "model": state["model"], "output_dir": out, "method": method, "output": "packed",
           "bits": 4, "group_size": 128, "calibration": CALIBRATION, "device": "auto", **CALIB}
    rc, events, err = run_recipe(cfg, f"quant-{method}.ndjson")
    check(rc == 0, f"exit {rc}: {err}")
    check(events and events[-1]["type"] == "result", "the last event is not a result")
    res = events[-1]["data"]
    check(res["device"] == ("cuda" if CUDA else "cpu"), f"ran on {res['device']}")
    with open(os.path.join(out, "config.json")) as f:
        qc = json.load(f)["quantization_config"]
    check(qc["quant_method"] == method and qc["bits"] == 4 and qc["group_size"] == 128, f"quantization_config {qc}")
    from safetensors import safe_open

    with safe_open(os.path.join(out, "model.safetensors"), "pt") as f:
        names = set(f.keys())
    suffixes = (".qweight", ".qzeros", ".scales") + ((".g_idx",) if method == "gptq" else ())
    layer = "model.layers.0.mlp.down_proj"
    check(all(layer + s in names for s in suffixes) and layer + ".weight" not in names, f"{layer}: {sorted(n for n in names if n.startswith(layer))}")
    state[method] = res
    tokens = res["calibration_tokens"]
    return (f"{res['seconds']:.1f} s, {tokens} calibration tokens ({tokens * res['layers'] / res['seconds']:.0f} "
            f"token-blocks/s), peak {'GPU' if CUDA else 'process'} memory {gib(res['peak_memory_bytes'])}, "
            f"{res['quantized_linears']} linears, output {gib(res['size'])}")


def c_memory(state, method):
    if not CUDA:
        raise Skip("no CUDA GPU (on the CPU the peak is the process's, model included)")
    res = state.get(method)
    if res is None:
        raise Skip(f"the {method} run failed")
    peak, whole = res["peak_memory_bytes"], state["model_bytes"]
    check(peak < whole, f"peak {gib(peak)} is not below the whole model's {gib(whole)}")
    return f"peak {gib(peak)} = {peak / whole:.0%} of the whole model's {gib(whole)}"


def main():
    checks = Checks()
    print(f"# outputs in {OUT}; work in {WORK}", flush=True)
    os.makedirs(OUT, exist_ok=True)
    state = {}
    rest = ["model", "gptq", "awq", "gptq-memory", "awq-memory"]
    if not checks.run("stack", c_stack):
        checks.skip(rest, "the Python ML stack is missing")
    elif not checks.run("model", c_model, state):
        checks.skip(rest[1:], "no model to quantize")
    else:
        checks.run("gptq", c_quantize, state, "gptq")
        checks.run("awq", c_quantize, state, "awq")
        checks.run("gptq-memory", c_memory, state, "gptq")
        checks.run("awq-memory", c_memory, state, "awq")
    shutil.rmtree(WORK, ignore_errors=True)
    return checks.finish(os.path.join(OUT, "quant_checks.json"))


if __name__ == "__main__":
    sys.exit(main())
