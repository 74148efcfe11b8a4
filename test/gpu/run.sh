#!/usr/bin/env bash
# GPU tests of slm's Python recipes (fine-tune, interrupt + resume, merge, GGUF conversion) on the tiny-arith
# fixture, then of the GPTQ/AWQ quantization recipes on a random Llama-3.2-1B-shaped model (quant_check.py).
# Needs only python3 with torch, transformers and peft; no node, no network. Without a CUDA GPU it trains a
# smaller configuration on the CPU (all checks passed in 9m12s on a 2-core machine, OMP_NUM_THREADS=1) and
# quantizes a small shape.
#
#   bash test/gpu/run.sh            (or: npm run test:gpu)
#
# Environment:
#   SLM_PYTHON      interpreter to use (default python3)
#   LLAMA_CPP_DIR   a llama.cpp source tree (convert_hf_to_gguf.py, convert_lora_to_gguf.py, gguf-py/) for the
#                   GGUF checks; when unset, the copy bundled with node-llama-cpp is cloned if node_modules has
#                   it, else those checks are skipped by name
#   SLM_TEST_OUT    where the event recordings and checks.json go (default: $OUT if set, else a temp folder)
# Prints PASS/FAIL/SKIP per check and a closing "N passed, N failed, N skipped" line per script; exits 1 on
# any FAIL.
set -uo pipefail
cd "$(dirname "$0")/../.."
PY="${SLM_PYTHON:-python3}"
BUNDLE=node_modules/node-llama-cpp/llama/gitRelease.bundle
if [ -z "${LLAMA_CPP_DIR:-}" ] && [ -f "$BUNDLE" ] && command -v git >/dev/null; then
  LLAMA_CPP_DIR="$(mktemp -d)/llama.cpp"
  if git clone -q "$BUNDLE" "$LLAMA_CPP_DIR" 2>/dev/null; then
    export LLAMA_CPP_DIR
    trap 'rm -rf "$(dirname "$LLAMA_CPP_DIR")"' EXIT
  else
    unset LLAMA_CPP_DIR
  fi
fi
PYTHONUNBUFFERED=1 "$PY" test/gpu/finetune_check.py "$@"
rc=$?
# The GPTQ and AWQ recipes on a Llama-3.2-1B-shaped model: time and peak GPU memory (a small shape on a CPU).
PYTHONUNBUFFERED=1 "$PY" test/gpu/quant_check.py || rc=1
exit $rc
