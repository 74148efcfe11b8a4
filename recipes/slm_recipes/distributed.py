"""Data-parallel training on one machine: `gpus` processes, one per GPU (with device "cpu", CPU processes
talking over gloo, which is how the tests check it on a machine without GPUs).

Each optimizer step takes `batch_size × gpus` examples per micro-batch; process r trains on the r-th share,
its loss divided by the loss tokens of the whole step (known on the host: every process holds the data), and
the LoRA gradients are summed across processes once per optimizer step, after accumulation. So N processes
with batch_size b compute the gradient that one process computes with batch_size N·b (up to float summation
order), and all processes apply the same update.

Why not torch's DistributedDataParallel: the recipe's loss runs the model body and a chunked head itself
(train_step.py), not the wrapped module's forward that DDP's gradient hooks are armed by; and LoRA gradients
are small (~11M numbers for a 1B model at r=16), so one all-reduce per optimizer step costs little.
Why not torchrun: its agent answers SIGINT by raising in itself and killing the workers after its own
timeout (exit code 1, a traceback), where a recipe must let every worker finish its step, save one
checkpoint and exit 130; and only rank 0 may write events to the protocol's stdout. A single-machine
launcher with those two rules is the few lines of `launch` below.

Across machines, a standard launcher starts the recipe instead: `torchrun` (under SLURM, `srun torchrun`) sets
RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT in each worker, and the recipe runs
unchanged: each rank trains on CUDA device LOCAL_RANK of its node, the process count is WORLD_SIZE (the
config's `gpus` only tells slm's own launcher how many processes to start), and only rank 0 writes events
(events.py) and files. What differs is Ctrl+C, which then belongs to that launcher (`external_launcher`)."""
import os
import signal
import socket
import subprocess
import sys
import time

import torch

from .errors import ConfigError

ENV_KEYS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
KILL_GRACE_S = 10


def is_worker():
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def external_launcher():
    """True when a launcher other than `launch` below started this process (torchrun, srun torchrun)."""
    return is_worker() and "SLM_LAUNCHER_PID" not in os.environ


def world_size():
    """The launcher's process count when started by one, else None."""
    return int(os.environ["WORLD_SIZE"]) if is_worker() else None


def check_devices(device, gpus):
    """In the launching process, before any worker starts: N processes need N GPUs (or device "cpu")."""
    if gpus <= 1 or device == "cpu":
        return
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n < gpus:
        raise ConfigError(f"gpus: {gpus} processes need {gpus} CUDA GPUs and torch sees {n}"
                          + ("" if device == "cuda" else "; device \"cpu\" (slm finetune --device cpu) runs them on the CPU"))


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(argv, gpus, events_fd):
    """Runs this recipe `gpus` times as ranks 0..gpus-1 and returns the exit code of the run: rank 0's when all
    end by themselves (0, or 130 after an interrupt), else the first failure's, after the others are stopped
    (they would wait for the failed one forever in their next collective).

    Workers get their own session, so a signal meant for the run reaches them once, through here: SIGINT and
    SIGTERM are forwarded (a second one too, for an immediate stop). A worker whose launcher dies is killed by
    the kernel (PR_SET_PDEATHSIG, set in the worker by `init`)."""
    port = _free_port()
    procs = []
    for rank in range(gpus):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(gpus),
                   LOCAL_WORLD_SIZE=str(gpus), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                   SLM_LAUNCHER_PID=str(os.getpid()))
        out = events_fd if rank == 0 else subprocess.DEVNULL
        procs.append(subprocess.Popen([sys.executable, *argv], env=env, stdin=subprocess.DEVNULL, stdout=out,
                                      start_new_session=True))

    def forward(signum, _frame):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    failed = None
    while True:
        codes = [p.poll() for p in procs]
        if failed is None:
            failed = next((p for p, c in zip(procs, codes) if c not in (None, 0, 130)), None)
            if failed is not None:
                _stop_all(procs)
                continue
        if all(c is not None for c in codes):
            break
        time.sleep(0.1)
    if failed is not None:
        return failed.returncode if failed.returncode > 0 else 128 - failed.returncode
    return procs[0].returncode


def _stop_all(procs):
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.time() + KILL_GRACE_S
    for p in procs:
        try:
            p.wait(max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class Group:
    """This process's place in the run: rank 0 of 1 when training alone."""

    def __init__(self):
        self.rank, self.world, self.local_rank = 0, 1, 0

    @property
    def active(self):
        return self.world > 1

    @property
    def main(self):
        return self.rank == 0

    def init(self, device_type):
        """Joins the process group when launched as a worker; returns the device this rank trains on."""
        if not is_worker():
            return None
        _die_with_launcher()
        self.rank, self.world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        self.local_rank = int(os.environ.get("LOCAL_RANK", self.rank))
        missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
        if missing:
            raise ConfigError(f"RANK and WORLD_SIZE are set but {' and '.join(missing)} not: start the recipe with "
                              "torchrun (which sets them all), or set them to rank 0's address and a free port")
        device = None
        if device_type == "cuda":
            # One GPU per process of this node: LOCAL_RANK picks it.
            n = torch.cuda.device_count()
            if self.local_rank >= n:
                raise ConfigError(f"LOCAL_RANK {self.local_rank}: this node starts "
                                  f"{os.environ.get('LOCAL_WORLD_SIZE', '?')} processes but torch sees {n} CUDA "
                                  f"GPUs; start at most {n} per node (torchrun --nproc-per-node {n})")
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        backend = "nccl" if device_type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend, init_method="env://", rank=self.rank, world_size=self.world,
                                             device_id=device)
        return device

    def share(self, batch, batch_size):
        """This rank's share of one global micro-batch (possibly empty for the last, short batch)."""
        return batch[self.rank * batch_size : (self.rank + 1) * batch_size]

    def broadcast_(self, params):
        """Rank 0's values everywhere (the LoRA initialisation is seeded alike, this makes it certain)."""
        if self.active:
            with torch.no_grad():
                for p in params:
                    torch.distributed.broadcast(p.data, 0)

    def sum_gradients(self, params, loss_sum, stop_requested, device):
        """Sums the gradients of `params` (absent ones count as zeros), the step's loss and the stop requests
        of all ranks in one all-reduce. Returns (global loss sum, whether any rank asked to stop)."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        extra = torch.tensor([0.0, 1.0 if stop_requested else 0.0], dtype=torch.float32, device=device)
        if loss_sum is not None:
            extra[0] = loss_sum.float()
        flat = torch.cat([g.reshape(-1).float() for g in grads] + [extra])
        torch.distributed.all_reduce(flat)
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            g.copy_(flat[offset : offset + n].view_as(g))
            p.grad = g
            offset += n
        return flat[offset], bool(flat[offset + 1] > 0)

    def sum(self, values, device):
        """Element-wise sum of a few numbers across ranks (eval loss totals)."""
        if not self.active:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def barrier(self):
        if self.active:
            torch.distributed.barrier()

    def close(self):
        if self.active and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _die_with_launcher():
    """Linux: SIGKILL this worker when its launcher dies, so a killed run leaves no process behind."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        # The launcher may have died before prctl took effect.
        if os.getppid() != int(os.environ.get("SLM_LAUNCHER_PID", os.getppid())):
            os._exit(1)
    except OSError:
        pass
