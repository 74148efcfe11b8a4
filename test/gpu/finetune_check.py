"""GPU checks of slm's Python recipes on the tiny-arith fixture (run by test/gpu/run.sh; see its header).

Checks, each reported PASS / FAIL / SKIP by name:
  stack           torch, transformers, peft import; which device they see
  python-unit     test/python's unittest suite, with its torch tests (chunked loss, accumulation, schedule)
  chunked-loss    the recipe's chunked cross-entropy equals the ordinary loss, value and gradients
  packing-mask    a packed sequence attends within its documents only (position ids → document mask)
  train           finetune_lora.py on hf/ + data/sub-train.jsonl: exit 0, events in slm's vocabulary, adapter
  accuracy        greedy exact match of base + trained adapter on all 500 lines of data/sub-eval.jsonl ≥ 90 %
  interrupt       SIGINT mid-run: exit 130, train step "fail", a checkpoint on disk
  resume          resume from that checkpoint: finishes with resumed_from set, and (on the CPU, where kernels
                  are deterministic) ends with the same adapter weights as an uninterrupted run
  merge           merge_lora.py: the merged model answers like base + adapter
  gguf-adapter    convert_lora_to_gguf.py on the trained adapter: the fixture's reference adapter tensor names
  gguf-merged     convert_hf_to_gguf.py on the merged model: the fixture's reference model tensor names
  bench-tiny      bench/finetune_gpu.py --tiny runs every variant
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from checks import Checks, Skip, check, has_cuda  # test/gpu/checks.py: the harness both check scripts share

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = os.path.join(ROOT, "test", "fixtures", "tiny-arith")
RECIPES = os.path.join(ROOT, "recipes")
sys.path.insert(0, RECIPES)
PY = sys.executable
OUT = os.environ.get("SLM_TEST_OUT") or os.environ.get("OUT") or tempfile.mkdtemp(prefix="slm-gpu-test-")
WORK = tempfile.mkdtemp(prefix="slm-gpu-work-")
LLAMA = os.environ.get("LLAMA_CPP_DIR")
EVENT_TYPES = {"step", "progress", "metric", "log", "result"}

CUDA = has_cuda()
# On a GPU: close to how the fixture's own adapter was trained (tools/make_tiny_arith.py: r=8, alpha 16, the
# seven projections, lr 3e-3, batches of 512, 3000 steps), which reached 98.8 % on sub-eval.
# Without one (the script runs on any machine with the stack): batches of 32, 2000 steps, lr 5e-3, which
# reached 96.2 % in about 6 minutes on one core of a 2-core machine (docs/finetune-recipes.md).
TRAIN = dict(chat_template=None, train_on_prompt=False, epochs=1, max_steps=3000 if CUDA else 2000,
             lr=3e-3 if CUDA else 5e-3, rank=8, alpha=16, dropout=0.0, target_modules="all-linear",
             batch_size=512 if CUDA else 32, grad_accum=1, max_seq_len=64, packing=False, qlora=False, seed=0,
             resume=False, merge=False, device="auto", gpus=1)
# The interrupt/resume runs: short, on the CPU (deterministic, so "resumed exactly" can be checked bit for
# bit), with packing, so that path trains too. Smaller without a GPU: the machine is then likely a small one.
SHORT = dict(TRAIN, max_steps=400 if CUDA else 60, batch_size=64 if CUDA else 16, packing=True, device="cpu",
             save_every=1000)



# --- running recipes ----------------------------------------------------------------------------------------

def run_recipe(script, cfg, record=None, interrupt_at=None, timeout=900):
    """Runs a recipe; returns (exit code, events, stderr text). Optionally saves stdout to `record` and sends
    SIGINT once a train progress event reaches `interrupt_at`."""
    cfg_path = os.path.join(WORK, f"cfg-{time.time_ns()}.json")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    err_path = cfg_path + ".stderr"
    events, sent = [], False
    with open(err_path, "w") as err:
        proc = subprocess.Popen([PY, os.path.join(RECIPES, script), "--config", cfg_path], stdout=subprocess.PIPE,
                                stderr=err, text=True)
        deadline = time.time() + timeout
        for line in proc.stdout:
            e = json.loads(line)
            events.append(e)
            if (interrupt_at is not None and not sent and e["type"] == "progress" and e["id"] == "train"
                    and e["current"] >= interrupt_at):
                proc.send_signal(signal.SIGINT)
                sent = True
            if time.time() > deadline:
                proc.kill()
        rc = proc.wait()
    if record:
        with open(os.path.join(OUT, record), "w") as f:
            f.writelines(json.dumps(e, separators=(",", ":")) + "\n" for e in events)
    with open(err_path) as f:
        return rc, events, f.read()


def check_vocabulary(events):
    for e in events:
        check(e.get("type") in EVENT_TYPES and isinstance(e.get("ts"), int), f"not an slm event: {e}")
        if e["type"] == "step":
            check(e["status"] in ("start", "done", "fail", "skip") and e.get("id") and e.get("title"), f"bad step {e}")
        if e["type"] == "metric":
            check(isinstance(e.get("value"), (int, float)) and e.get("name"), f"bad metric {e}")


def result_of(events, rc, stderr):
    check(rc == 0, f"exit {rc}: {stderr[-1500:]}")
    check(events and events[-1]["type"] == "result", "the last event is not a result")
    return events[-1]["data"]


def steps_done(events):
    return [e["id"] for e in events if e["type"] == "step" and e["status"] == "done"]


# --- the model in Python ------------------------------------------------------------------------------------

def device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load(path, adapter=None):
    import torch
    from transformers import AutoModelForCausalLM

    dev = device()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16 if dev.type == "cuda" else torch.float32)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    return model.to(dev).eval()


def accuracy(model, tokenizer_dir, limit=None):
    """Greedy exact match on data/sub-eval.jsonl, prompts rendered with the chat template, left-padded."""
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    with open(os.path.join(FIX, "data", "sub-eval.jsonl")) as f:
        recs = [json.loads(x) for x in f][:limit]
    pad, eos, ok = tok.pad_token_id or 0, tok.eos_token_id, 0
    for i in range(0, len(recs), 250):
        chunk = recs[i : i + 250]
        prompts = [tok.encode(tok.apply_chat_template(r["messages"][:1], tokenize=False, add_generation_prompt=True),
                              add_special_tokens=False) for r in chunk]
        width = max(map(len, prompts))
        ids = torch.full((len(prompts), width), pad)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for j, p in enumerate(prompts):
            ids[j, width - len(p):] = torch.tensor(p)
            mask[j, width - len(p):] = 1
        with torch.no_grad():
            out = model.generate(input_ids=ids.to(model.device), attention_mask=mask.to(model.device), max_new_tokens=5,
                                 do_sample=False, eos_token_id=eos, pad_token_id=pad)
        for j, r in enumerate(chunk):
            answer = tok.decode(out[j, width:], skip_special_tokens=True).strip()
            ok += answer == r["messages"][1]["content"]
    return ok / len(recs)


# --- checks -------------------------------------------------------------------------------------------------

def c_stack():
    try:
        import peft
        import torch
        import transformers
    except ImportError as e:
        raise Skip(f"missing python module: {e.name}")
    where = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA GPU: running on the CPU"
    return f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}; {where}"


def c_python_unit():
    r = subprocess.run([PY, "-m", "unittest", "discover", "-s", os.path.join(ROOT, "test", "python")],
                       capture_output=True, text=True, timeout=600)
    check(r.returncode == 0, r.stderr[-2000:])
    return r.stderr.strip().splitlines()[-1]


def c_chunked_loss():
    import torch
    from slm_recipes.model import apply_lora
    from slm_recipes.train_step import CausalLMLoss

    results = []
    for chunked in (True, False):
        torch.manual_seed(0)
        model = load(os.path.join(FIX, "hf")).float().cpu()
        for p in model.parameters():
            p.requires_grad_(False)
        peft = apply_lora(model, 8, 16, 0.0, "all-linear")
        # Random non-zero B so that the LoRA path carries gradient to A as well.
        for n, p in peft.named_parameters():
            if "lora_B" in n:
                torch.nn.init.normal_(p, std=0.02)
        fn = CausalLMLoss(model, torch.float32, chunked=chunked)
        check(fn.chunked == chunked, f"chunked path {'not ' if chunked else ''}taken for llama")
        g = torch.Generator().manual_seed(1)
        ids = torch.randint(6, 300, (3, 40), generator=g)
        labels = ids.clone()
        labels[:, :15] = -100  # a masked prompt
        loss, n = fn({"input_ids": ids, "labels": labels})
        (loss / n).backward()
        grads = {k: p.grad.clone() for k, p in peft.named_parameters() if p.requires_grad}
        results.append((float(loss), n, grads))
    (l1, n1, g1), (l2, n2, g2) = results
    check(n1 == n2 == 3 * 25, f"loss tokens {n1} vs {n2}")
    check(abs(l1 - l2) <= 1e-4 * abs(l2), f"loss {l1} vs {l2}")
    worst = max(float((g1[k] - g2[k]).abs().max() / (g2[k].abs().max() + 1e-12)) for k in g1)
    check(worst < 1e-3, f"gradients differ by {worst:.2e} (relative)")
    return f"loss {l1:.5f} = {l2:.5f}; gradients within {worst:.1e}"


def c_packing_mask():
    import torch

    model = load(os.path.join(FIX, "hf")).float().cpu()
    body = model.model
    a = torch.tensor([[1, 3, 10, 11, 12, 4, 20, 2]])
    b = torch.tensor([[1, 3, 13, 14, 4, 21, 2]])
    with torch.no_grad():
        ha = body(input_ids=a, use_cache=False).last_hidden_state
        hb = body(input_ids=b, use_cache=False).last_hidden_state
        packed = torch.cat([a, b], 1)
        pos = torch.cat([torch.arange(a.shape[1]), torch.arange(b.shape[1])])[None]
        hp = body(input_ids=packed, position_ids=pos, use_cache=False).last_hidden_state
    diff = max(float((hp[:, : a.shape[1]] - ha).abs().max()), float((hp[:, a.shape[1]:] - hb).abs().max()))
    check(diff < 1e-4, f"packed hidden states differ from separate ones by {diff:.2e}: documents see each other")
    return f"max difference {diff:.1e}"


def c_train(state):
    cfg = dict(TRAIN, base=os.path.join(FIX, "hf"), train=os.path.join(FIX, "data", "sub-train.jsonl"),
               eval=os.path.join(FIX, "data", "sub-eval.jsonl"), output_dir=os.path.join(WORK, "run1"))
    rc, events, err = run_recipe("finetune_lora.py", cfg, record="events-train.ndjson")
    res = result_of(events, rc, err)
    check_vocabulary(events)
    check(steps_done(events) == ["load", "data", "train", "save"], f"steps done: {steps_done(events)}")
    names = {e["name"] for e in events if e["type"] == "metric"}
    check({"loss", "lr", "grad_norm", "tokens_per_s", "eval_loss"} <= names, f"metrics seen: {sorted(names)}")
    n = TRAIN["max_steps"]
    check(any(e["type"] == "progress" and e["current"] == n and e["total"] == n for e in events), "no final progress")
    check(res["steps"] == n and res["merged_dir"] is None and res["resumed_from"] is None, f"result {res}")
    for f in ("adapter_config.json", "adapter_model.safetensors"):
        check(os.path.isfile(os.path.join(res["adapter_dir"], f)), f"no {f} in {res['adapter_dir']}")
    state["run1"] = res
    peak = res["peak_gpu_mem_gib"]
    return (f"train loss {res['train_loss']:.4f}, eval loss {res['eval_loss']:.4f}, {res['seconds']:.1f} s, "
            f"{res['tokens'] / res['seconds']:,.0f} tokens/s" + (f", peak {peak:.2f} GiB" if peak is not None else ""))


def c_accuracy(state):
    if "run1" not in state:
        raise Skip("no trained adapter (train failed)")
    acc = accuracy(load(os.path.join(FIX, "hf"), state["run1"]["adapter_dir"]), state["run1"]["adapter_dir"])
    state["acc"] = acc
    check(acc >= 0.90, f"exact match {acc:.1%} < 90 %")
    return f"exact match {acc:.1%} on 500"


def short_cfg(name, **over):
    return dict(SHORT, base=os.path.join(FIX, "hf"), train=os.path.join(FIX, "data", "sub-train.jsonl"), eval=None,
                output_dir=os.path.join(WORK, name), **over)


def c_interrupt(state):
    rc, events, err = run_recipe("finetune_lora.py", short_cfg("run2"), record="events-interrupted.ndjson",
                                 interrupt_at=20)
    check(rc == 130, f"exit {rc} (want 130): {err[-800:]}")
    check_vocabulary(events)
    fails = [e for e in events if e["type"] == "step" and e["status"] == "fail"]
    check(fails and fails[-1]["id"] == "train", f"no failed train step: {fails}")
    check(not any(e["type"] == "result" for e in events), "an interrupted run emitted a result")
    from slm_recipes import checkpoint

    found = checkpoint.latest(os.path.join(WORK, "run2"))
    check(found is not None, "no checkpoint after SIGINT")
    check(not os.path.exists(os.path.join(WORK, "run2", "adapter")), "an interrupted run wrote a final adapter")
    state["interrupted_at"] = found[1]
    return f"stopped at step {found[1]} of {SHORT['max_steps']}"


def c_resume(state):
    if "interrupted_at" not in state:
        raise Skip("nothing to resume (interrupt failed)")
    rc, events, err = run_recipe("finetune_lora.py", short_cfg("run2", resume=True, merge=True),
                                 record="events-resumed.ndjson")
    res = result_of(events, rc, err)
    check(str(res["resumed_from"]).endswith(f"checkpoints{os.sep}step-{state['interrupted_at']}") and res["steps"] == SHORT["max_steps"],
          f"result {res}")
    check(steps_done(events) == ["load", "data", "train", "save", "merge"], f"steps done: {steps_done(events)}")
    check(os.path.isfile(os.path.join(res["merged_dir"], "config.json")), "no merged model")
    state["merged2"] = res["merged_dir"]
    # The same run without interruption must end with the same weights.
    rc, events, err = run_recipe("finetune_lora.py", short_cfg("run3"))
    ref = result_of(events, rc, err)
    from safetensors.torch import load_file

    a = load_file(os.path.join(res["adapter_dir"], "adapter_model.safetensors"))
    b = load_file(os.path.join(ref["adapter_dir"], "adapter_model.safetensors"))
    check(a.keys() == b.keys(), "different adapter tensors")
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    check(worst <= 1e-6, f"resumed weights differ from an uninterrupted run's by {worst:.2e}")
    return f"resumed at step {state['interrupted_at']}; weights equal to an uninterrupted run (max diff {worst:.1e})"


def c_data_parallel():
    """gpus=2 (two CUDA GPUs when torch sees them, else two CPU processes over gloo) with batch 8 must train what
    one process trains with batch 8 and grad_accum 2: the same sums in the same order (batch 16 would add in
    another order, and at this learning rate runs part by 1e-3 within 30 steps from that alone)."""
    cuda2 = CUDA and torch_cuda_count() >= 2
    where = "cuda" if cuda2 else "cpu"
    over = dict(max_steps=10, packing=False, device=where, save_every=1000)
    runs = {}
    for name, gpus, accum in (("dp2", 2, 1), ("dp1", 1, 2)):
        rc, events, err = run_recipe("finetune_lora.py", short_cfg(name, gpus=gpus, batch_size=8, grad_accum=accum,
                                                                    **over))
        runs[name] = (result_of(events, rc, err), [e["value"] for e in events if e["type"] == "metric" and e["name"] == "loss"])
    (two, l2), (one, l1) = runs["dp2"], runs["dp1"]
    check(len(l1) == len(l2) and l1, f"loss points {len(l2)} vs {len(l1)}")
    worst_loss = max(abs(a / b - 1) for a, b in zip(l2, l1))
    check(worst_loss < 1e-4, f"losses differ by {worst_loss:.1e} (relative)")
    from safetensors.torch import load_file

    a = load_file(os.path.join(two["adapter_dir"], "adapter_model.safetensors"))
    b = load_file(os.path.join(one["adapter_dir"], "adapter_model.safetensors"))
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    check(worst < 1e-4, f"weights differ by {worst:.1e}")
    return f"2 {where} processes × batch 8 vs 1 × 8 × grad_accum 2: losses within {worst_loss:.1e}, weights within {worst:.1e}"


def torch_cuda_count():
    import torch

    return torch.cuda.device_count()


def c_merge(state):
    if "run1" not in state:
        raise Skip("no trained adapter (train failed)")
    out = os.path.join(WORK, "merged1")
    rc, events, err = run_recipe("merge_lora.py", {"base": os.path.join(FIX, "hf"),
                                                   "adapter": state["run1"]["adapter_dir"], "out": out})
    res = result_of(events, rc, err)
    check_vocabulary(events)
    check(res["merged_dir"] == out and os.path.isfile(os.path.join(out, "model.safetensors")), f"result {res}")
    merged = accuracy(load(out), out, limit=200)
    with_adapter = accuracy(load(os.path.join(FIX, "hf"), state["run1"]["adapter_dir"]), state["run1"]["adapter_dir"],
                            limit=200)
    check(abs(merged - with_adapter) <= 0.02, f"merged {merged:.1%} vs base + adapter {with_adapter:.1%}")
    state["merged1"] = out
    return f"merged {merged:.1%} vs base + adapter {with_adapter:.1%} (first 200)"


def gguf_tensor_names(path):
    sys.path.insert(0, os.path.join(LLAMA, "gguf-py"))
    from gguf import GGUFReader

    return {t.name for t in GGUFReader(path).tensors}


def convert(script, args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(LLAMA, "gguf-py"), LLAMA]))
    r = subprocess.run([PY, os.path.join(LLAMA, script), *args], capture_output=True, text=True, env=env, timeout=600)
    check(r.returncode == 0, f"{script} exit {r.returncode}: {(r.stdout + r.stderr)[-1500:]}")


def c_gguf(state, needs, script, reference, make_args):
    """Converts with one of llama.cpp's scripts and compares tensor names with the fixture's reference GGUF."""
    if not LLAMA:
        raise Skip("LLAMA_CPP_DIR is not set")
    if needs not in state:
        raise Skip(f"nothing to convert ({needs} failed)")
    out = os.path.join(WORK, f"{needs}.gguf")
    convert(script, make_args(state[needs], out))
    names, ref = gguf_tensor_names(out), gguf_tensor_names(os.path.join(FIX, "gguf", reference))
    check(names == ref, f"tensors differ from {reference}: {sorted(names ^ ref)[:6]}")
    return f"{len(names)} tensors, {os.path.getsize(out):,} bytes"


def c_gguf_adapter(state):
    return c_gguf(state, "run1", "convert_lora_to_gguf.py", "lora-sub-f32.gguf", lambda run, out: [
        "--base", os.path.join(FIX, "hf"), "--outfile", out, "--outtype", "f32", run["adapter_dir"]])


def c_gguf_merged(state):
    return c_gguf(state, "merged1", "convert_hf_to_gguf.py", "tiny-arith-f16.gguf",
                  lambda merged, out: [merged, "--outfile", out, "--outtype", "f16"])


def c_bench_tiny():
    r = subprocess.run([PY, os.path.join(ROOT, "bench", "finetune_gpu.py"), "--tiny", "--variants",
                        "a,b,c-none,c-selective,c-full"], capture_output=True, text=True, timeout=600)
    check(r.returncode == 0, f"exit {r.returncode}: {r.stderr[-1500:]}")
    rows = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    errors = [x for x in rows if "error" in x]
    check(len(rows) == 5 and not errors, f"variants failed: {errors}")
    b = next(x for x in rows if x["variant"] == "b")
    worst = max(abs(x["first_loss"] - b["first_loss"]) / b["first_loss"] for x in rows)
    check(worst < 1e-2, f"first-step losses differ by {worst:.1e}")
    return "; ".join(f"{x['variant']} {x['tokens_per_s']:,.0f} tok/s" for x in rows)


def main():
    checks = Checks()
    print(f"# outputs in {OUT}; work in {WORK}", flush=True)
    os.makedirs(OUT, exist_ok=True)
    state = {}
    rest = ["python-unit", "chunked-loss", "packing-mask", "train", "accuracy", "interrupt", "resume", "data-parallel",
            "merge", "gguf-adapter", "gguf-merged", "bench-tiny"]
    if not checks.run("stack", c_stack):
        checks.skip(rest, "the Python ML stack is missing")
    else:
        checks.run("python-unit", c_python_unit)
        checks.run("chunked-loss", c_chunked_loss)
        checks.run("packing-mask", c_packing_mask)
        checks.run("train", c_train, state)
        checks.run("accuracy", c_accuracy, state)
        checks.run("interrupt", c_interrupt, state)
        checks.run("resume", c_resume, state)
        checks.run("data-parallel", c_data_parallel)
        checks.run("merge", c_merge, state)
        checks.run("gguf-adapter", c_gguf_adapter, state)
        checks.run("gguf-merged", c_gguf_merged, state)
        checks.run("bench-tiny", c_bench_tiny)
    shutil.rmtree(WORK, ignore_errors=True)
    return checks.finish(os.path.join(OUT, "checks.json"))


if __name__ == "__main__":
    sys.exit(main())
