"""Jobs: the bookkeeping of a long operation the desktop app runs.

A :class:`Job` wraps one call of a core function with the progress/cancel protocol of
:mod:`.progress`: it records status (queued → running → done | failed | cancelled), progress,
ETA and the result or the error's one-line message.  It knows nothing about threads or Qt; the GUI
runs :meth:`Job.run` in a worker thread and listens through :attr:`Job.listener`.

The task functions the app's buttons start live by panel, each a plain function taking ``progress`` and
``cancel`` so it is tested headless like every other core step: :mod:`.tasks_open` (:func:`open_task`,
:func:`open_models`), :mod:`.tasks_prune` (:func:`analyze_task`, :func:`apply_task`), :mod:`.tasks_preview`
(:func:`preview_task`, :func:`evaluate_task`), :mod:`.tasks_retrain` (:func:`retrain_check_task`,
:func:`retrain_task`, :func:`evaluate_healed_task`) and :mod:`.tasks_export` (:func:`export_task`,
:func:`bench_task`); :func:`run_state` is :mod:`.runs`'.  They are re-exported here for older imports.
"""

from __future__ import annotations

import itertools
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .errors import Cancelled, SlimError
from .progress import CancelToken, EtaTracker, check
from .runs import run_state  # noqa: F401
from .tasks_export import bench_task, export_task, folder_bytes  # noqa: F401
from .tasks_open import NeedsChoice, file_kind, open_models, open_task  # noqa: F401
from .tasks_preview import evaluate_task, preview_task  # noqa: F401
from .tasks_prune import analyze_task, apply_task  # noqa: F401
from .tasks_retrain import evaluate_healed_task, retrain_check_task, retrain_task  # noqa: F401


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


_ids = itertools.count(1)


@dataclass(eq=False)
class Job:
    """One long operation. ``run(fn)`` calls ``fn(progress=..., cancel=...)`` and records the outcome."""

    title: str
    kind: str = "task"
    id: int = field(default_factory=lambda: next(_ids))
    status: JobStatus = JobStatus.QUEUED
    done: int = 0
    total: int = 0
    message: str = ""
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    details: str | None = None  # a traceback, for bugs only
    result: Any = field(default=None, repr=False)
    cancel_token: CancelToken = field(default_factory=CancelToken, repr=False)
    listener: Callable[[Job], None] | None = field(default=None, repr=False)
    _eta: EtaTracker | None = field(default=None, repr=False)
    _phase: tuple[int, str] = field(default=(0, ""), repr=False)

    # -- progress protocol ---------------------------------------------------------------------
    def progress(self, done: int, total: int, message: str = "") -> None:
        if total != self._phase[0]:  # a new phase (another total): restart the rate estimate
            self._phase = (total, message)
            self._eta = EtaTracker()
        self.done, self.total, self.message = int(done), int(total), message
        if self._eta is not None and self._eta.base is None and done < total:
            self._eta.observe(int(done))  # a run that starts part-way (a resume) is timed from there
        self._notify()

    def cancel(self) -> None:
        self.cancel_token.cancel()
        if self.status == JobStatus.QUEUED:
            self.message = "cancelling…"
        self._notify()

    @property
    def cancel_requested(self) -> bool:
        return self.cancel_token.cancelled

    @property
    def fraction(self) -> float | None:
        if self.status == JobStatus.DONE:
            return 1.0
        return self.done / self.total if self.total > 0 else None

    @property
    def eta(self) -> float | None:
        if self.status != JobStatus.RUNNING or self._eta is None:
            return None
        return self._eta.eta(self.done, self.total)

    @property
    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.time()) - self.started

    def _notify(self) -> None:
        if self.listener is not None:
            try:
                self.listener(self)
            except Exception:  # a listener's bug must not kill the work
                pass

    # -- running -------------------------------------------------------------------------------
    def run(self, fn: Callable[..., Any]) -> Any:
        """Run ``fn(progress=, cancel=)`` here and now; never raises (the outcome is in the fields)."""
        self.started = time.time()
        self._eta = EtaTracker()
        try:
            check(self.cancel_token)
            self.status = JobStatus.RUNNING
            if self.message.startswith("waiting for ") or self.message == "starting…":
                self.message = ""  # it no longer waits
            self._notify()
            self.result = fn(progress=self.progress, cancel=self.cancel_token)
            self.status = JobStatus.DONE
            self.message = self.message if self.message and self.message != "cancelling…" else "done"
        except Cancelled:
            self.status = JobStatus.CANCELLED
            self.message = "cancelled"
        except SlimError as exc:
            self.status = JobStatus.FAILED
            self.error = exc.one_line()
        except Exception as exc:  # a bug: keep the traceback for the details view
            self.status = JobStatus.FAILED
            self.error = f"{type(exc).__name__}: {exc}"
            self.details = traceback.format_exc()
        finally:
            self.finished = time.time()
            self._notify()
        return self.result


def format_eta(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
