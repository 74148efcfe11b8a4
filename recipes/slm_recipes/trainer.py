"""One fine-tuning run: load → data → train → save (→ merge), reporting each phase as events.

Steps are optimizer steps (each `grad_accum` micro-batches of `batch_size` examples). The run is a pure
function of the config and the data: the seed fixes the LoRA initialisation, each epoch's order and dropout,
so a resumed run continues exactly where the checkpoint left off."""
import gc
import math
import os
import random
import time
from contextlib import nullcontext

import torch

from . import checkpoint as ckpt
from . import events as ev
from .data import Encoder, collate, encode_all, epoch_batches, loss_tokens, pack, read_jsonl, real_tokens
from .distributed import Group
from .errors import Cancelled, ConfigError, RecipeError
from .units import format_bytes
from .fsutil import atomic_dir, sha256_file
from .merge import merge
from .tokenizer_files import copy_tokenizer
from .model import (apply_lora, compute_dtype, load_base, load_tokenizer, make_all_trainable, pick_device,
                    trainable_parameters)
from .train_step import (CausalLMLoss, compile_layers, keep_input_dtype, make_optimizer, make_scheduler,
                         set_checkpointing, to_device, train_step, warmup_steps_for)

PROGRESS_EVERY_S = 0.5
METRIC_POINTS = 200  # about this many loss points over a run, whatever its length


def resolve_checkpointing(mode, device):
    # Selective checkpointing on GPUs (most of the memory saving of full checkpointing, little of its cost);
    # none on the CPU, where the models that train in reasonable time are small.
    if mode != "auto":
        return mode
    return "selective" if device.type == "cuda" else "none"


def fingerprint(cfg, train_sha):
    keys = ("base", "train_on_prompt", "chat_template", "epochs", "max_steps", "lr", "rank", "alpha", "dropout",
            "target_modules", "batch_size", "grad_accum", "max_seq_len", "packing", "qlora", "seed", "warmup_ratio")
    fp = {k: getattr(cfg, k) for k in keys}
    fp["train_sha256"] = train_sha
    # Absent at their defaults, so checkpoints written before these keys existed still resume.
    if cfg.full:
        fp["full"] = True
    if cfg.kd_alpha is not None:
        fp["kd_alpha"] = cfg.kd_alpha
    if cfg.gpus > 1:
        # The process count sets the batches (batch_size per process). Absent for one process, so checkpoints
        # written before several processes existed still resume.
        fp["gpus"] = cfg.gpus
    return fp


class Run:
    def __init__(self, cfg, steps, interrupt):
        self.cfg, self.steps, self.interrupt = cfg, steps, interrupt
        self.group = Group()  # several processes with gpus > 1 (distributed.py); rank 0 of 1 otherwise

    # --- phases ---------------------------------------------------------------------------------------------

    def load(self):
        cfg = self.cfg
        self.steps.start("load", "Load base model", cfg.base)
        self.device = pick_device(cfg.device)
        self.device = self.group.init(self.device.type) or self.device
        if cfg.qlora and self.device.type != "cuda":
            raise ConfigError("qlora: 4-bit training (bitsandbytes) needs a CUDA GPU, and torch sees none")
        self.dtype = compute_dtype(self.device)
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.tokenizer = load_tokenizer(cfg.base)
        if cfg.chat_template:
            self.tokenizer.chat_template = cfg.chat_template
        # Padding is masked out of attention and loss, so any id will do when the tokenizer has none.
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        # Full fine-tuning keeps fp32 master weights (AdamW updates are lost in bf16 weights); the matmuls still
        # run in self.dtype under autocast. LoRA's frozen base may be stored in self.dtype.
        self.model = load_base(cfg.base, self.device, torch.float32 if cfg.full else self.dtype, cfg.qlora)
        self.checkpointing = resolve_checkpointing(cfg.checkpointing, self.device)
        set_checkpointing(self.model, self.checkpointing)
        if cfg.full:
            self.peft = make_all_trainable(self.model)  # "peft": the model that trains, here the whole one
        else:
            self.peft = apply_lora(self.model, cfg.rank, cfg.alpha, cfg.dropout, cfg.target_modules)
            if self.dtype != torch.float32:
                keep_input_dtype(self.peft)
        if cfg.compile:
            compile_layers(self.model)
        self.params = trainable_parameters(self.peft)
        self.group.broadcast_(self.params)
        self.loss_fn = CausalLMLoss(self.model, self.dtype, compiled=cfg.compile, kd_alpha=cfg.kd_alpha)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.autocast = lambda: torch.autocast("cuda", dtype=self.dtype, enabled=self.dtype != torch.float32)
        else:
            self.autocast = nullcontext
        n_train = sum(p.numel() for p in self.params)
        n_all = sum(p.numel() for p in self.peft.parameters())
        ev.log("info", f"device {self.device}"
                       + (f" × {self.group.world} processes" if self.group.active else "")
                       + f", {str(self.dtype).replace('torch.', '')}, checkpointing "
                       f"{self.checkpointing}, loss "
                       + (f"KD + CE (kd_alpha={cfg.kd_alpha:g}, logits at answer tokens)" if cfg.kd_alpha is not None
                          else "chunked" if self.loss_fn.chunked else "standard")
                       + (", compiled layers" if cfg.compile else "") + "; "
                       + ("full fine-tuning" if cfg.full else f"LoRA r={cfg.rank} alpha={cfg.alpha:g}")
                       + f": {n_train:,} trainable of {n_all:,} parameters")
        self.steps.done(f"{n_train:,} trainable parameters")

    def data(self):
        cfg = self.cfg
        self.steps.start("data", "Prepare data", cfg.train)
        enc = Encoder(self.tokenizer, cfg.chat_template, cfg.train_on_prompt)
        records = read_jsonl(cfg.train)
        train, stats = encode_all(records, enc, cfg.max_seq_len, teacher=cfg.kd_alpha is not None)
        self._report_teacher(records, stats)
        if not train:
            raise ConfigError(f"train: no example has a token to learn from within max_seq_len {cfg.max_seq_len}")
        self.items = pack(train, cfg.max_seq_len, cfg.seed) if cfg.packing else train
        self.eval_items = None
        if cfg.eval:
            ev_items, ev_stats = encode_all(read_jsonl(cfg.eval), enc, cfg.max_seq_len)
            self.eval_items = ev_items or None
            if ev_stats.truncated:
                ev.log("warn", f"{ev_stats.truncated} eval examples were longer than max_seq_len {cfg.max_seq_len} "
                               "and were truncated")
        for n, what in ((stats.truncated, "were longer than max_seq_len {} and were truncated"),
                        (stats.dropped, "had no token to learn from within max_seq_len {} and were dropped"),
                        (stats.inexact_masks, "rendered with a chat template whose prefixes do not tokenize as "
                                              "prefixes of the whole; their loss masks may be off by a token")):
            if n:
                ev.log("warn", f"{n} training examples " + what.format(cfg.max_seq_len))
        # Each micro-batch holds batch_size examples per process.
        self.global_batch = cfg.batch_size * self.group.world
        self.batches_per_epoch = math.ceil(len(self.items) / self.global_batch)
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / cfg.grad_accum)
        self.total_steps = cfg.max_steps or math.ceil(cfg.epochs * self.steps_per_epoch)
        detail = (f"{stats.examples} examples, {stats.tokens:,} tokens ({stats.loss_tokens:,} trained), longest "
                  f"{stats.longest}" + (f", packed into {len(self.items)} sequences" if cfg.packing else "")
                  + f"; {self.total_steps} steps")
        self.steps.done(detail)

    def _report_teacher(self, records, stats):
        self.kd_stats = {"examples": stats.kd_examples, "misaligned": stats.kd_misaligned}
        with_teacher = sum(1 for r in records if "teacher" in r)
        if self.cfg.kd_alpha is None:
            if with_teacher:
                ev.log("info", f"{with_teacher} training examples carry teacher log-probabilities; without kd_alpha "
                               "they train on the teacher's answers alone (sequence-level distillation)")
            return
        if stats.kd_misaligned:
            ev.log("warn", f"{stats.kd_misaligned} of {with_teacher} examples with teacher log-probabilities do not "
                           "line up with the student's tokens (another tokenizer or chat template?); they train on "
                           "cross-entropy alone")
        if not stats.kd_examples:
            ev.log("warn", "kd_alpha is set but no training example has teacher log-probabilities that line up: "
                           "training on cross-entropy alone")

    def train(self):
        cfg = self.cfg
        self.optimizer = make_optimizer(self.params, cfg.lr, self.device.type)
        self.scheduler = make_scheduler(self.optimizer, self.total_steps,
                                        warmup_steps_for(self.total_steps, cfg.warmup_ratio))
        self.fingerprint = fingerprint(cfg, sha256_file(cfg.train))
        self.step, self.resumed_from = 0, None
        self.stop_agreed = False
        # The loss curve so far travels in the checkpoints, so a resumed run shows the whole of it.
        self.counters = {"tokens": 0, "seconds": 0.0, "loss_history": [], "eval_history": []}
        if cfg.resume:
            found = ckpt.latest(cfg.output_dir)
            if not found:
                raise ConfigError(f"resume: no checkpoint in {ckpt.checkpoints_dir(cfg.output_dir)}")
            self.step, counters = ckpt.load(found[0], self.peft, self.optimizer, self.scheduler,
                                            self.fingerprint)
            self.counters.update(counters)  # checkpoints from before the histories existed have none
            self.resumed_from = found[0]  # the checkpoint folder, …/checkpoints/step-N
            ev.log("info", f"resumed from {found[0]} (step {self.step} of {self.total_steps})")
            for step, value in self.counters["loss_history"]:
                ev.metric("loss", value, step=step)
            for step, value in self.counters["eval_history"]:
                ev.metric("eval_loss", value, step=step)
        elif ckpt.latest(cfg.output_dir):
            ev.log("info", f"starting over: removing earlier checkpoints in {ckpt.checkpoints_dir(cfg.output_dir)}")
            if self.group.main:
                ckpt.clear(cfg.output_dir)
        self.group.barrier()
        save_every = cfg.save_every or max(1, math.ceil(self.total_steps / 10))
        log_every = max(1, self.total_steps // METRIC_POINTS)
        self.last_saved = self.step
        self.train_loss = self.eval_loss = self.peak_gib = None

        self.steps.start("train", "Train", f"{self.total_steps} steps")
        self.peft.train()
        self.run_start = time.time()
        start_step, last_progress = self.step, 0.0
        order_epoch, order = None, None
        window = []  # (step, loss tensor, grad-norm tensor) since the last metrics: read then, so steps need no sync
        win_tokens, win_start = 0, time.time()
        try:
            while self.step < self.total_steps:
                epoch, k = divmod(self.step, self.steps_per_epoch)
                if epoch != order_epoch:
                    order_epoch, order = epoch, epoch_batches(len(self.items), self.global_batch, cfg.seed, epoch)
                micro, n_loss = [], 0
                for idx in order[k * cfg.grad_accum : (k + 1) * cfg.grad_accum]:
                    every = [self.items[i] for i in idx]  # all processes' examples: counted here, on the host
                    n = real_tokens(every)
                    win_tokens += n
                    self.counters["tokens"] += n
                    n_loss += loss_tokens(every)
                    mine = [self.items[i] for i in self.group.share(idx, cfg.batch_size)]
                    if mine:
                        micro.append(to_device(collate(mine, self.pad_id), self.device))
                sync = self._sync if self.group.active else None
                loss, gnorm = train_step(self.loss_fn, micro, self.params, self.optimizer, self.scheduler,
                                         self.autocast, n_total=n_loss, sync=sync)
                self.step += 1
                window.append((self.step, loss, gnorm))
                now = time.time()
                if now - last_progress >= PROGRESS_EVERY_S or self.step == self.total_steps:
                    ev.progress("train", "steps", self.step, self.total_steps,
                                (self.step - start_step) / max(now - self.run_start, 1e-9))
                    last_progress = now
                if self.step % log_every == 0 or self.step == self.total_steps:
                    self._metrics(window, win_tokens, time.time() - win_start)
                    window, win_tokens, win_start = [], 0, time.time()
                if self.eval_items and (self.step % self.steps_per_epoch == 0 or self.step == self.total_steps):
                    self.eval_loss = self.evaluate()
                    if self.eval_loss is not None:
                        ev.metric("eval_loss", self.eval_loss, step=self.step)
                        self.counters["eval_history"].append([self.step, self.eval_loss])
                if self.step < self.total_steps:
                    if self.stop_agreed if self.group.active else self.interrupt.requested:
                        self._stop()
                    if self.step % save_every == 0:
                        self._save_checkpoint()
        except torch.cuda.OutOfMemoryError:
            raise RecipeError(f"out of GPU memory at step {self.step + 1} ({cfg.batch_size} × up to "
                              f"{cfg.max_seq_len} tokens per micro-batch, checkpointing {self.checkpointing}); "
                              "lower batch_size or max_seq_len (raise grad_accum to keep the batch), or use "
                              "checkpointing \"full\"") from None
        self.counters["seconds"] += time.time() - self.run_start
        if self.device.type == "cuda":
            self.peak_gib = torch.cuda.max_memory_allocated(self.device) / 2**30
        detail = f"{self.step} steps"
        if self.train_loss is not None:
            detail += f", train loss {self.train_loss:.4f}"
        if self.eval_loss is not None:
            detail += f", eval loss {self.eval_loss:.4f}"
        self.steps.done(detail)

    def _sync(self, params, loss_sum):
        """train_step's hook with several processes: gradients and loss summed, and one decision to stop."""
        total, stop = self.group.sum_gradients(params, loss_sum, self.interrupt.requested, self.device)
        self.stop_agreed = self.stop_agreed or stop
        return total

    def _metrics(self, window, tokens, seconds):
        losses = []
        for step, loss, _ in window:
            value = float(loss)
            if not math.isfinite(value):
                raise RecipeError(f"the loss became {value} at step {step}; try a lower lr")
            losses.append(value)
        step, _, gnorm = window[-1]
        self.train_loss = sum(losses) / len(losses)
        ev.metric("loss", self.train_loss, step=step)
        self.counters["loss_history"].append([step, self.train_loss])
        ev.metric("lr", self.scheduler.get_last_lr()[0], step=step)
        ev.metric("grad_norm", float(gnorm), step=step)
        if seconds > 0:
            ev.metric("tokens_per_s", tokens / seconds, step=step, unit="tokens/s")
        if self.device.type == "cuda":
            ev.metric("gpu_mem_gib", torch.cuda.max_memory_allocated(self.device) / 2**30, step=step, unit="GiB")

    @torch.no_grad()
    def evaluate(self):
        self.peft.eval()
        total, count = 0.0, 0
        # Each process scores every world-th example; the sums are added up across processes.
        mine = self.eval_items[self.group.rank :: self.group.world]
        try:
            for i in range(0, len(mine), self.cfg.batch_size):
                if self.interrupt.requested and not self.group.active:
                    return None
                batch = to_device(collate(mine[i : i + self.cfg.batch_size], self.pad_id), self.device)
                with self.autocast():
                    loss, n = self.loss_fn(batch)
                total += float(loss)
                count += n
        finally:
            self.peft.train()
        total, count = self.group.sum([total, float(count)], self.device)
        return total / count if count else None

    def _save_checkpoint(self):
        counters = dict(self.counters, seconds=self.counters["seconds"] + time.time() - self.run_start)
        # Every process holds the same weights and optimizer state: rank 0 writes them.
        path = None
        if self.group.main:
            path = ckpt.save(self.cfg.output_dir, self.peft, self.optimizer, self.scheduler, self.step, counters,
                             self.fingerprint, adapter=not self.cfg.full)
        self.group.barrier()
        # Other ranks name rank 0's folder without looking: across machines it may be on rank 0's disk alone.
        path = path or os.path.join(ckpt.checkpoints_dir(self.cfg.output_dir), f"step-{self.step}")
        self.last_saved = self.step
        ev.log("debug", f"checkpoint {path}")
        return path

    def _stop(self):
        """SIGINT: the step in flight has finished; save it (unless just saved) and exit 130."""
        path = (self._save_checkpoint() if self.step != self.last_saved
                else os.path.join(ckpt.checkpoints_dir(self.cfg.output_dir), f"step-{self.step}"))
        ev.log("warn", f"interrupted at step {self.step} of {self.total_steps}; checkpoint saved in {path}; "
                       "run again with resume to continue")
        self.steps.fail(f"interrupted at step {self.step}")
        raise Cancelled(f"interrupted at step {self.step}; checkpoint {path}")

    def save(self):
        full = self.cfg.full
        out = os.path.join(self.cfg.output_dir, "model" if full else "adapter")
        self.steps.start("save", "Save model" if full else "Save adapter", out)
        if self.group.main:
            with atomic_dir(out) as tmp:
                self.peft.save_pretrained(tmp)
                if full:
                    # A whole model goes on to be converted to GGUF: the base's tokenizer files, not a re-save.
                    copy_tokenizer(self.cfg.base, tmp, self.cfg.chat_template)
                else:
                    self.tokenizer.save_pretrained(tmp)
        self.group.barrier()
        self.adapter_dir, self.model_dir = (None, out) if full else (out, None)
        self.steps.done(out)

    def merge(self):
        out = os.path.join(self.cfg.output_dir, "merged")
        self.steps.start("merge", "Merge adapter into the base model", out)
        # Free the training copy (possibly 4-bit, possibly on the GPU) before loading the full-precision base.
        del self.peft, self.model, self.optimizer, self.scheduler, self.loss_fn, self.params
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        info = merge(self.cfg.base, self.adapter_dir, out)
        self.steps.done(format_bytes(info["bytes"]))
        return out

    def result(self, merged_dir):
        return {"adapter_dir": self.adapter_dir, "model_dir": self.model_dir, "merged_dir": merged_dir,
                "kd": self.kd_stats if self.cfg.kd_alpha is not None else None, "train_loss": self.train_loss,
                "eval_loss": self.eval_loss, "steps": self.step,
                "epochs": round(self.step / self.steps_per_epoch, 4), "tokens": self.counters["tokens"],
                "seconds": round(self.counters["seconds"], 3), "peak_gpu_mem_gib": self.peak_gib,
                "resumed_from": self.resumed_from}


def run(cfg, steps, interrupt):
    r = Run(cfg, steps, interrupt)
    try:
        for phase in (r.load, r.data):
            phase()
            # With several processes, one that saw the interrupt here stops alone and the others fail in
            # their next collective; the launcher then ends the run (no checkpoint exists yet to save).
            if interrupt.requested:
                steps.fail("interrupted")
                raise Cancelled("interrupted before training started")
        r.train()
        r.save()
        if not r.group.main:
            return None  # rank 0 merges and reports
        merged = r.merge() if cfg.merge else None
        return r.result(merged)
    finally:
        r.group.close()
