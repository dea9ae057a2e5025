"""Progress reporting and cancellation for long operations.

Long core functions take ``progress`` (a callable ``(done, total, message)``) and ``cancel`` (a
:class:`CancelToken`) and check the token between steps.  The CLI passes a terminal progress bar,
the GUI a worker signal; tests pass a list's ``append``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import Cancelled

ProgressFn = Callable[[int, int, str], None]


class CancelToken:
    """Thread-safe flag; long operations call :meth:`raise_if_cancelled` between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("operation cancelled")


def report(progress: ProgressFn | None, done: int, total: int, message: str = "") -> None:
    if progress is not None:
        progress(done, total, message)


def check(cancel: CancelToken | None) -> None:
    if cancel is not None:
        cancel.raise_if_cancelled()


@dataclass
class EtaTracker:
    """Estimates the remaining time of a run from the rate seen so far.  The first progress it observes is its
    baseline, so a run resumed at step 6 of 12 is timed from step 6 (not as if six steps took no time)."""

    start: float = field(default_factory=time.monotonic)
    base: int | None = None  # the first ``done`` observed (0 for a run from the start)

    def observe(self, done: int) -> None:
        if self.base is None:
            self.base, self.start = int(done), time.monotonic()

    def eta(self, done: int, total: int) -> float | None:
        base = self.base or 0
        if done <= base or total <= 0 or done > total:
            return None
        elapsed = time.monotonic() - self.start
        return elapsed / (done - base) * (total - done)
