"""SIGINT / SIGTERM during training: finish the step, save a checkpoint, return normally."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any


class StopSignals:
    """Turns SIGINT/SIGTERM into a request to stop after the current step; restores the previous handlers on exit.

    A second SIGINT (Ctrl-C twice) aborts at once with ``KeyboardInterrupt``. Outside the main thread Python cannot
    install handlers, so there signals keep their default behaviour.
    """

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        sys.stderr.write(f"\n{self.received} received: finishing the current step and saving a checkpoint\n")

    def __exit__(self, *exc_info: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
