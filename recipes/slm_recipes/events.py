"""NDJSON events on stdout in slm's event vocabulary (src/core/events.ts): step, progress, metric, log, result.

stdout belongs to the protocol alone: `claim_stdout()` keeps a private duplicate of the real stdout for events
and points file descriptor 1 (and sys.stdout) at stderr, so a stray print() in a library, or C code writing to
fd 1, lands in the log instead of corrupting the event stream.

With several processes (RANK set by slm's launcher or by torchrun) rank 0 alone speaks the protocol: a launcher
such as torchrun merges every worker's stdout into its own, so events from other ranks would interleave with
rank 0's. Their warnings and errors go to stderr as plain lines instead."""
import json
import math
import os
import sys
import time

_out = None


def claim_stdout():
    """Reserve the process's stdout for events. Idempotent."""
    global _out
    if _out is not None:
        return
    sys.stdout.flush()
    _out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr


def events_fd():
    """The file descriptor events are written to (for a child process that writes them instead)."""
    return (_out if _out is not None else sys.stdout).fileno()


def _clean(value):
    """JSON has no NaN/Infinity: JavaScript's JSON.parse rejects them, so non-finite floats become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def rank():
    """This process's rank in a multi-process run (0 when alone)."""
    try:
        return int(os.environ.get("RANK") or 0)
    except ValueError:
        return 0


def emit(event):
    """Writes one event as a JSON line; fills `ts` (ms since the epoch) when missing."""
    r = rank()
    if r != 0:
        if event.get("type") == "log" and event.get("level") in ("warn", "error"):
            print(f"[rank {r}] {event['level']}: {event.get('message')}", file=sys.stderr, flush=True)
        return
    if "ts" not in event:
        event = {**event, "ts": int(time.time() * 1000)}
    line = json.dumps(_clean(event), allow_nan=False, separators=(",", ":"))
    out = _out if _out is not None else sys.stdout
    out.write(line + "\n")
    out.flush()


def step(id, status, title, detail=None):
    e = {"type": "step", "id": id, "status": status, "title": title}
    if detail is not None:
        e["detail"] = detail
    emit(e)


def progress(id, unit, current, total=None, rate=None):
    e = {"type": "progress", "id": id, "unit": unit, "current": current}
    if total is not None:
        e["total"] = total
    if rate is not None:
        e["rate"] = rate
    emit(e)


def metric(name, value, step=None, unit=None):
    """A metric whose value is not a finite number is dropped (the event type requires a number)."""
    value = float(value)
    if not math.isfinite(value):
        return
    e = {"type": "metric", "name": name, "value": value}
    if unit is not None:
        e["unit"] = unit
    if step is not None:
        e["step"] = step
    emit(e)


def log(level, message):
    emit({"type": "log", "level": level, "message": message})


def result(data):
    emit({"type": "result", "data": data})


class Steps:
    """Tracks the step in progress so that a failure or an interrupt can close it with `fail`."""

    def __init__(self):
        self.current = None  # (id, title)

    def start(self, id, title, detail=None):
        self.current = (id, title)
        step(id, "start", title, detail)

    def done(self, detail=None):
        if self.current:
            step(self.current[0], "done", self.current[1], detail)
            self.current = None

    def fail(self, detail=None):
        if self.current:
            step(self.current[0], "fail", self.current[1], detail)
            self.current = None
