"""The harness test/gpu's check scripts share: named checks that PASS, FAIL (with the traceback on stderr) or
SKIP, one line each as they end, and a closing summary written as JSON and counted on one line."""
import json
import time
import traceback


class Skip(Exception):
    pass


def has_cuda():
    """Whether torch is installed and sees a CUDA device (the checks pick their shapes by it)."""
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def check(cond, message):
    if not cond:
        raise AssertionError(message)


class Checks:
    def __init__(self):
        self.results = []

    def record(self, name, status, detail=""):
        self.results.append({"name": name, "status": status, "detail": detail})
        print(f"{status} {name}" + (f" — {detail}" if detail else ""), flush=True)

    def run(self, name, fn, *args):
        t0 = time.time()
        try:
            detail = fn(*args)
            self.record(name, "PASS", f"{detail or ''} ({time.time() - t0:.1f} s)".strip())
            return True
        except Skip as e:
            self.record(name, "SKIP", str(e))
        except Exception as e:
            traceback.print_exc()
            self.record(name, "FAIL", f"{type(e).__name__}: {e}")
        return False

    def skip(self, names, why):
        for n in names:
            self.record(n, "SKIP", why)

    def finish(self, json_path):
        """Writes the results to json_path, prints "N passed, N failed, N skipped"; the exit code (1 on a FAIL)."""
        with open(json_path, "w") as f:
            json.dump(self.results, f, indent=1)
        count = {s: sum(r["status"] == s for r in self.results) for s in ("PASS", "FAIL", "SKIP")}
        print(f"{count['PASS']} passed, {count['FAIL']} failed, {count['SKIP']} skipped")
        return 1 if count["FAIL"] else 0
