"""The model slot every serving face shares: one model-bound job at a time, a bounded line waiting for it.

The gradio queue already runs one job per concurrency group; the OpenAI API has no gradio queue, so both hold
this slot too, and a burst of API calls waits in the same bounded line instead of running beside the page's job.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

from lmdemo.config import DEMO_LIMITS, get_settings
from lmdemo.errors import LmdemoError

QUEUE_SIZE = 64  # callers waiting per slot on one's own machine; a shared Space waits DEMO_LIMITS.queue_size
_POLL_S = 0.25  # how often a waiting caller checks whether it has gone away


class BusyError(LmdemoError):
    """The line for the model is full; the caller should try again later."""


class Slot:
    """A lock with a bounded line of waiting callers."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._line = threading.Lock()
        self._waiting = 0

    def check_line(self) -> None:
        """BusyError now if the line is full (a caller can answer "busy" before it starts anything)."""
        cap = DEMO_LIMITS.queue_size if get_settings().demo_mode else QUEUE_SIZE
        if self._waiting >= cap:
            raise BusyError(f"The server is busy: {self._waiting} requests are waiting for the model; try again "
                            "in a minute.")

    @contextlib.contextmanager
    def hold(self, gone: threading.Event | None = None, bounded: bool = True) -> Iterator[None]:
        """Wait for the slot and hold it for the block; BusyError when ``bounded`` and the line is full, or when
        ``gone`` is set while waiting (the caller left)."""
        with self._line:
            if bounded:
                self.check_line()
            self._waiting += 1
        try:
            while not self._lock.acquire(timeout=_POLL_S):
                if gone is not None and gone.is_set():
                    raise BusyError("The caller went away while waiting for the model.")
        finally:
            with self._line:
                self._waiting -= 1
        try:
            yield
        finally:
            self._lock.release()


CAUSAL_LM = Slot("causal-lm")  # generation, summaries, translation, evaluation, the LM lab
