#!/usr/bin/env python3
"""Fine-tuning throughput: slm's recipe step against two plain PEFT loops, in one run, on one GPU.

    python3 bench/finetune_gpu.py                 # Llama-3.2-1B shape, random weights, batch 8 × 2048, bf16
    python3 bench/finetune_gpu.py --tiny          # a tiny shape that runs on a CPU in seconds (smoke test)
    python3 bench/finetune_gpu.py --variants a,b,c-none --steps 20 --json out.json

Every variant builds the same model (config only, no download; the same seed, so the same weights and LoRA
initialisation), LoRA r=16 / alpha 32 on all linear layers except lm_head, SDPA attention, bf16 weights with
bf16 autocast on CUDA (fp32 on CPU), and trains on the same random tokens (every position has a label):
  a               plain PEFT loop: model(input_ids, labels).loss, gradient checkpointing, AdamW
  b               plain PEFT loop without checkpointing, fused AdamW
  c-<ckpt>[-compile]
                  the recipe's step (recipes/slm_recipes/train_step.py, as finetune_lora.py runs it): loss
                  chunked over the vocabulary from the body's hidden states, fused AdamW, LR schedule,
                  activation checkpointing none | selective | full, optionally torch.compile'd layers and loss
Warm-up steps (and compilation) are outside the timing. Peak memory is torch.cuda.max_memory_allocated over
the whole variant (weights included). The first-step loss of each variant is printed next to (b)'s: the same
weights and tokens must give the same loss, whatever the path that computes it."""
import argparse
import gc
import json
import os
import sys
import time
from contextlib import nullcontext

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "recipes"))

import torch  # noqa: E402

from slm_recipes.model import apply_lora, trainable_parameters  # noqa: E402
from slm_recipes.train_step import (CausalLMLoss, compile_layers, keep_input_dtype, make_optimizer,  # noqa: E402
                                    make_scheduler, set_checkpointing, train_step)

SHAPES = {
    # meta-llama/Llama-3.2-1B (rope scaling left out: it changes no cost)
    "llama-3.2-1b": dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                         num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=True,
                         max_position_embeddings=8192, rms_norm_eps=1e-5),
    "tiny": dict(vocab_size=1024, hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, tie_word_embeddings=True, max_position_embeddings=512, rms_norm_eps=1e-5),
}
DEFAULT_VARIANTS = "a,b,c-none,c-selective,c-full,c-none-compile,c-selective-compile"


def build(shape, device, dtype, seed):
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(seed)
    cfg = LlamaConfig(**SHAPES[shape])
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa")
    model.to(dtype)
    model.config.use_cache = False
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def lora(model):
    torch.manual_seed(1)
    return apply_lora(model, rank=16, alpha=32, dropout=0.0, target_modules="all-linear")


def plain_step_fn(variant, model, device, dtype, lr):
    """(a) / (b): the usual PEFT loop."""
    if variant == "a":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    peft = lora(model)
    params = trainable_parameters(peft)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=(variant == "b" and device.type == "cuda"))
    autocast = (lambda: torch.autocast("cuda", dtype=dtype)) if device.type == "cuda" else nullcontext
    peft.train()

    def step(ids):
        with autocast():
            loss = peft(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    return step, "standard"


def recipe_step_fn(variant, model, device, dtype, lr, total_steps):
    """(c): exactly the recipe's pieces, in the order trainer.Run.load puts them together."""
    parts = variant.split("-")
    ckpt_mode, compiled = parts[1], "compile" in parts[2:]
    set_checkpointing(model, ckpt_mode)
    peft = lora(model)
    if dtype != torch.float32:
        keep_input_dtype(peft)
    if compiled:
        compile_layers(model)
    params = trainable_parameters(peft)
    loss_fn = CausalLMLoss(model, dtype, compiled=compiled)
    opt = make_optimizer(params, lr, device.type)
    sched = make_scheduler(opt, total_steps, 0)
    autocast = (lambda: torch.autocast("cuda", dtype=dtype)) if device.type == "cuda" else nullcontext
    peft.train()

    def step(ids):
        batch = {"input_ids": ids, "labels": ids, "n_loss": ids.shape[0] * (ids.shape[1] - 1)}
        loss, _ = train_step(loss_fn, [batch], params, opt, sched, autocast)
        return loss

    return step, "chunked" if loss_fn.chunked else "standard"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_variant(variant, args, device, dtype, ids):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model = build(args.shape, device, dtype, args.seed)
    total = args.warmup + args.steps
    if variant in ("a", "b"):
        step, loss_path = plain_step_fn(variant, model, device, dtype, args.lr)
    else:
        step, loss_path = recipe_step_fn(variant, model, device, dtype, args.lr, total)
    t0 = time.perf_counter()
    first_loss = float(step(ids))
    for _ in range(args.warmup - 1):
        step(ids)
    sync(device)
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        last = step(ids)
    sync(device)
    dt = time.perf_counter() - t0
    out = {"variant": variant, "loss_path": loss_path, "tokens_per_s": ids.numel() * args.steps / dt,
           "step_s": dt / args.steps, "warmup_s": warm_s, "first_loss": first_loss, "last_loss": float(last)}
    if device.type == "cuda":
        out["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        out["reserved_gib"] = torch.cuda.max_memory_reserved(device) / 2**30
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny shape, batch 2 × 128, fewer steps (runs on a CPU)")
    ap.add_argument("--shape", default=None, choices=sorted(SHAPES))
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--seq", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None, help="timed steps per variant")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    ap.add_argument("--variants", default=DEFAULT_VARIANTS)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    args.shape = args.shape or ("tiny" if args.tiny else "llama-3.2-1b")
    args.batch = args.batch or (2 if args.tiny else 8)
    args.seq = args.seq or (128 if args.tiny else 2048)
    args.steps = args.steps or (3 if args.tiny else 10)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    g = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(0, SHAPES[args.shape]["vocab_size"], (args.batch, args.seq), generator=g).to(device)

    import peft
    import transformers

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# {where}; torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}; "
          f"shape {args.shape}, batch {args.batch} × {args.seq}, {str(dtype).replace('torch.', '')}, "
          f"{args.warmup} warm-up + {args.steps} timed steps per variant", flush=True)
    results = []
    for v in [x for x in args.variants.split(",") if x]:
        try:
            r = run_variant(v, args, device, dtype, ids)
        except torch.cuda.OutOfMemoryError:
            r = {"variant": v, "error": "out of memory"}
        except Exception as e:  # one broken variant must not hide the others' figures
            r = {"variant": v, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]}
        results.append(r)
        print(json.dumps(r), flush=True)
        if "compile" in v:
            torch._dynamo.reset()  # compiled graphs must not keep this variant's model alive
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    report(results, device)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": where, "args": vars(args), "results": results}, f, indent=1)


def report(results, device):
    by = {r["variant"]: r for r in results}
    print()
    print("| variant | loss | tokens/s | step s | peak GiB | first loss | vs b: throughput | memory vs a | memory vs b |")
    print("|---|---|---|---|---|---|---|---|---|")
    a, b = by.get("a"), by.get("b")
    ok = lambda r: r is not None and "error" not in r  # noqa: E731
    for r in results:
        if "error" in r:
            print(f"| {r['variant']} | | {r['error']} | | | | | | |")
            continue
        peak = r.get("peak_gib")
        thr = f"{r['tokens_per_s'] / b['tokens_per_s']:.2f}×" if ok(b) else ""
        mem_a = f"{peak / a['peak_gib']:.2f}×" if ok(a) and peak else ""
        mem_b = f"{peak / b['peak_gib']:.2f}×" if ok(b) and peak else ""
        print(f"| {r['variant']} | {r['loss_path']} | {r['tokens_per_s']:,.0f} | {r['step_s']:.3f} | "
              f"{'' if peak is None else f'{peak:.1f}'} | {r['first_loss']:.4f} | {thr} | {mem_a} | {mem_b} |")
    if ok(b):
        for r in results:
            if ok(r) and r["variant"].startswith("c"):
                rel = abs(r["first_loss"] - b["first_loss"]) / abs(b["first_loss"])
                print(f"{r['variant']}: first-step loss differs from b's by {rel:.2e} (relative)")
    if device.type == "cuda" and ok(a) and ok(b):
        cs = [r for r in results if ok(r) and r["variant"].startswith("c")]
        fast = [r for r in cs if r["tokens_per_s"] >= 1.3 * b["tokens_per_s"] and r["peak_gib"] <= b["peak_gib"]]
        lean = [r for r in cs if r["tokens_per_s"] >= b["tokens_per_s"] and r["peak_gib"] <= a["peak_gib"]]
        print("target ≥1.3× b's throughput at ≤ b's memory: " + (", ".join(r["variant"] for r in fast) or "none"))
        print("target ≥ b's throughput within a's memory: " + (", ".join(r["variant"] for r in lean) or "none"))


if __name__ == "__main__":
    main()
