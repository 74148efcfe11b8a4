"""SIGINT as a request, not an exception: the training loop polls `requested` between optimizer steps, saves a
checkpoint and exits 130. A second SIGINT raises KeyboardInterrupt at once, for a user who does not want to wait."""
import signal


class Interrupt:
    def __init__(self):
        self.requested = False
        self.immediate = False
        # A second signal stops at once, unless a launcher that sends its own copy of the first one owns
        # the run (cli.py: torchrun forwards the SIGINT the terminal already delivered, then kills after 30 s).
        self.escalate = True

    def at_once(self):
        """For a recipe with nothing to save (an export builds in a staging folder it removes): the first
        SIGINT raises KeyboardInterrupt wherever the recipe is (importing torch, loading the model), instead
        of waiting for the next poll."""
        self.immediate = True
        return self

    def install(self):
        signal.signal(signal.SIGINT, self._handle)
        # slm forwards Ctrl+C as SIGINT; SIGTERM (e.g. a job scheduler) gets the same clean stop.
        signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.immediate or (self.requested and self.escalate):
            raise KeyboardInterrupt
        self.requested = True
