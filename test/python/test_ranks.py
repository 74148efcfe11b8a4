"""The recipe under a standard launcher (torchrun), without torch: rank 0 alone writes events; the config's `gpus`
yields to the launcher's WORLD_SIZE; the launcher's forwarded copy of a stop signal does not cancel the clean
stop. End to end (torchrun, two CPU processes): test/e2e/finetuneTorchrun.test.ts.

Run with `python3 -m unittest discover -s test/python -p test_ranks.py`."""
import json
import os
import signal
import subprocess
import sys
import unittest
from types import SimpleNamespace

RECIPES = os.path.join(os.path.dirname(__file__), "..", "..", "recipes")
sys.path.insert(0, RECIPES)

from slm_recipes.interrupt import Interrupt  # noqa: E402

EMIT = """
from slm_recipes import events as ev
ev.claim_stdout()
ev.step("load", "start", "Load")
ev.log("info", "quiet")
ev.log("warn", "heard")
"""


def emit_as(rank):
    env = dict(os.environ)
    env.pop("RANK", None)
    if rank is not None:
        env["RANK"] = str(rank)
    return subprocess.run([sys.executable, "-c", EMIT], cwd=RECIPES, env=env, capture_output=True, text=True, check=True)


class EventsByRank(unittest.TestCase):
    def test_rank_0_and_a_lone_process_write_events(self):
        for rank in (None, 0):
            r = emit_as(rank)
            lines = [json.loads(line) for line in r.stdout.splitlines()]
            self.assertEqual([e["type"] for e in lines], ["step", "log", "log"], r.stdout)

    def test_other_ranks_write_no_event_and_their_warnings_to_stderr(self):
        r = emit_as(1)
        self.assertEqual(r.stdout, "")
        self.assertIn("[rank 1] warn: heard", r.stderr)
        self.assertNotIn("quiet", r.stderr)


class LauncherOwnsTheRun(unittest.TestCase):
    def test_world_size_wins_over_gpus_with_a_warning(self):
        from slm_recipes import cli, events as ev

        logged = []
        real_log, ev.log = ev.log, lambda level, message: logged.append((level, message))
        try:
            for gpus, warned in ((1, False), (4, False), (2, True)):
                logged.clear()
                cfg = SimpleNamespace(gpus=gpus)
                cli.adopt_launcher(cfg, 4, Interrupt())
                self.assertEqual(cfg.gpus, 4)
                self.assertEqual(bool(logged), warned, logged)
        finally:
            ev.log = real_log

    def test_a_second_signal_stops_at_once_unless_a_launcher_owns_the_run(self):
        previous = signal.getsignal(signal.SIGTERM)
        try:
            alone = Interrupt().install()
            os.kill(os.getpid(), signal.SIGTERM)
            self.assertTrue(alone.requested)
            with self.assertRaises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGTERM)
            launched = Interrupt().install()
            launched.escalate = False
            os.kill(os.getpid(), signal.SIGTERM)  # from the scheduler
            os.kill(os.getpid(), signal.SIGTERM)  # torchrun's copy
            self.assertTrue(launched.requested)
        finally:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, signal.default_int_handler)


if __name__ == "__main__":
    unittest.main()
