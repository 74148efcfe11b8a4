"""The shell every recipe runs in: `--config FILE`, stdout reserved for events, SIGINT as a request, and
failures mapped to exit codes with a one-line message on stderr (tracebacks only for unexpected errors)."""
import argparse
import json
import sys
import traceback

from . import events as ev
from .errors import Cancelled, ConfigError, MissingModule, RecipeError
from .interrupt import Interrupt


def main(description, validate, run, modules):
    """validate(raw dict) → config; run(config, steps, interrupt) → result data. `modules` are checked before
    anything heavy is imported."""
    ev.claim_stdout()
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help="JSON config file")
    parser.add_argument("--resume", action="store_true",
                        help="set the config's resume: continue from the last checkpoint (for torchrun, which "
                             "runs a config prepared by slm finetune --prepare)")
    args = parser.parse_args()
    steps = ev.Steps()
    interrupt = Interrupt().install()
    try:
        try:
            with open(args.config, encoding="utf-8") as f:
                raw = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"cannot read config {args.config}: {e}") from None
        if args.resume:
            raw["resume"] = True
        cfg = validate(raw)
        from .deps import require

        require(modules + (["bitsandbytes"] if getattr(cfg, "qlora", False) else []),
                "QLoRA" if getattr(cfg, "qlora", False) else "")
        from .distributed import check_devices, external_launcher, is_worker, launch, world_size

        if getattr(cfg, "gpus", 1) > 1 and not is_worker():
            # The launcher: the workers write the events (rank 0) and the result; this process waits for them.
            check_devices(cfg.device, cfg.gpus)
            return launch(sys.argv, cfg.gpus, ev.events_fd())
        if external_launcher():
            adopt_launcher(cfg, world_size(), interrupt)
        data = run(cfg, steps, interrupt)
        ev.result(data)
        return 0
    except (Cancelled, KeyboardInterrupt) as e:
        steps.fail("interrupted")
        print(f"cancelled: {e}" if str(e) else "cancelled", file=sys.stderr)
        return Cancelled.exit_code
    except MissingModule as e:
        fix = "slm setup python --qlora" if "bitsandbytes" in e.modules else "slm setup python"
        ev.log("warn", f"{e}" + (f" (needed for {e.purpose})" if e.purpose else "") + f"; install it with {fix}")
        steps.fail(str(e))
        print(str(e), file=sys.stderr)
        return e.exit_code
    except RecipeError as e:
        steps.fail(str(e))
        print(str(e), file=sys.stderr)
        return e.exit_code
    except Exception as e:  # an unexpected failure: keep the traceback for the stderr tail
        steps.fail(f"{type(e).__name__}: {e}")
        traceback.print_exc()
        return 1


def adopt_launcher(cfg, world, interrupt):
    """torchrun (or another standard launcher) started this process: its WORLD_SIZE is the process count, and
    the config's `gpus` (how many processes slm's own launcher starts) yields to it. The launcher owns Ctrl+C:
    it forwards the SIGINT the terminal already sent, so a second signal must not cancel the clean stop."""
    if hasattr(cfg, "gpus"):
        if cfg.gpus not in (1, world):
            ev.log("warn", f"gpus: {cfg.gpus} in the config, but the launcher started {world} processes; "
                           f"training with {world}")
        cfg.gpus = world
    interrupt.escalate = False
