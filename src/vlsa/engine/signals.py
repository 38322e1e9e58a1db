"""Stopping a training run cleanly: SIGTERM and SIGINT (Ctrl-C) become 'finish this step, save a
last checkpoint, then stop' instead of dying mid-write."""

from __future__ import annotations

import signal


class StopSignals:
    """A context manager whose `requested` is the name of the signal received (None until then).
    A second Ctrl-C interrupts at once (KeyboardInterrupt)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested = None  # the name of the signal received
        self._previous: dict = {}

    def __enter__(self):
        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, _frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
