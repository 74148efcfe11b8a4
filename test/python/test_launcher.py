"""The data-parallel launcher (recipes/slm_recipes/distributed.py `launch`), with stand-in workers: a failing rank
ends the run with its exit code and the others are stopped; SIGINT to the launcher's process group reaches
every rank (through the launcher: the workers have sessions of their own); a launcher killed outright takes its
workers with it. Training itself is checked end to end by
test/e2e/finetuneGpus.test.ts. Skipped without torch (distributed.py imports it)."""
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

RECIPES = os.path.join(os.path.dirname(__file__), "..", "..", "recipes")

try:
    import torch  # noqa: F401
except ImportError:
    torch = None

# Runs `launch` on WORKER (a -c program) with 2 ranks; the launcher's exit code is the run's.
LAUNCHER = textwrap.dedent("""
    import sys
    from slm_recipes.distributed import launch
    sys.exit(launch(["-c", sys.argv[1]], 2, sys.stdout.fileno()))
""")


def start(test, worker, tmp):
    env = dict(os.environ, PYTHONPATH=RECIPES, TEST_TMP=tmp)
    # Its own process group, as slm starts a recipe (src/core/exec.ts, killTree): slm's Ctrl+C goes to the group.
    p = subprocess.Popen([sys.executable, "-c", LAUNCHER, textwrap.dedent(worker)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    test.addCleanup(lambda: p.poll() is None and p.kill())  # a failed test leaves nothing running
    return p


def wait_for(paths, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if all(os.path.exists(p) for p in paths):
            return True
        time.sleep(0.05)
    return False


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose; on Linux /proc says which.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


@unittest.skipIf(torch is None, "torch is not installed")
class LauncherTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="slm-launch-")

    def test_ranks_get_their_place_and_only_rank_0_writes_stdout(self):
        p = start(self, """
            import os
            print(f"rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']} at {os.environ['MASTER_ADDR']}", flush=True)
        """, self.tmp)
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(out.strip(), "rank 0 of 2 at 127.0.0.1")

    def test_a_failing_rank_ends_the_run_with_its_code_and_stops_the_others(self):
        p = start(self, """
            import os, sys, time
            if os.environ["RANK"] == "1":
                time.sleep(0.3)
                sys.exit(3)
            time.sleep(120)  # as if waiting for rank 1 in a collective
        """, self.tmp)
        t0 = time.time()
        _, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 3, err)
        self.assertLess(time.time() - t0, 30)

    def test_sigint_to_the_launchers_group_reaches_every_rank_and_the_run_exits_130(self):
        # The workers have sessions of their own, so this reaches them only through the launcher's forwarding.
        p = start(self, """
            import os, signal, sys, time
            from slm_recipes.distributed import _die_with_launcher
            _die_with_launcher()
            d, rank = os.environ["TEST_TMP"], os.environ["RANK"]
            seen = []
            signal.signal(signal.SIGINT, lambda *_: seen.append(1))
            open(os.path.join(d, f"ready-{rank}"), "w").close()
            while not seen:
                time.sleep(0.05)
            open(os.path.join(d, f"stopped-{rank}"), "w").close()
            sys.exit(130)
        """, self.tmp)
        self.assertTrue(wait_for([os.path.join(self.tmp, f"ready-{r}") for r in (0, 1)]), "workers did not start")
        os.killpg(p.pid, signal.SIGINT)  # what slm does on Ctrl+C
        _, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 130, err)
        for r in (0, 1):
            self.assertTrue(os.path.exists(os.path.join(self.tmp, f"stopped-{r}")), f"rank {r} saw no SIGINT")

    @unittest.skipUnless(sys.platform.startswith("linux"), "PR_SET_PDEATHSIG is Linux's")
    def test_a_killed_launcher_takes_its_workers_with_it(self):
        p = start(self, """
            import os, time
            from slm_recipes.distributed import _die_with_launcher
            _die_with_launcher()
            with open(os.path.join(os.environ["TEST_TMP"], f"pid-{os.environ['RANK']}"), "w") as f:
                f.write(str(os.getpid()))
            time.sleep(120)
        """, self.tmp)
        files = [os.path.join(self.tmp, f"pid-{r}") for r in (0, 1)]
        self.assertTrue(wait_for(files), "workers did not start")
        time.sleep(0.2)
        pids = []
        for name in files:
            with open(name) as f:
                pids.append(int(f.read()))
        p.kill()
        p.communicate(timeout=30)
        deadline = time.time() + 10
        while time.time() < deadline and any(alive(pid) for pid in pids):
            time.sleep(0.1)
        self.assertEqual([pid for pid in pids if alive(pid)], [])


if __name__ == "__main__":
    unittest.main()
