"""Running core functions in worker threads.

:class:`JobRunner` runs a :class:`slimgui.core.jobs.Job` on a ``QThreadPool`` and turns its
progress and outcome into Qt signals delivered on the GUI thread.  Work that touches a loaded model
goes to the serial ``"model"`` lane (criteria may temporarily rewire the model, so two
jobs must never use one model at once); opening files goes to the parallel ``"io"`` lane; retraining
(which loads its own copies of the models from disk) goes to the serial ``"train"`` lane, so a long run
never holds up analysis or previews; work on a model no other job holds (a healed model opened to be measured)
goes to the serial ``"eval"`` lane, so it holds up neither.

Errors never escape a worker: a :class:`SlimError` becomes a one-line message in the notification
area, anything else (a bug) the same message with its traceback as details.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from slimgui.core.jobs import Job, JobStatus

from .notify import Notifier

PROGRESS_INTERVAL_S = 0.05  # at most 20 progress signals a second per job


class _Bridge(QObject):
    changed = Signal(object)  # Job
    finished = Signal(object)  # Job


class _Runnable(QRunnable):
    def __init__(self, job: Job, fn: Callable[..., Any], bridge: _Bridge):
        super().__init__()
        self.setAutoDelete(False)
        self.job, self.fn, self.bridge = job, fn, bridge

    def run(self) -> None:  # worker thread
        self.job.run(self.fn)
        self.bridge.finished.emit(self.job)


class JobRunner(QObject):
    """Submits jobs, keeps the list the Jobs panel shows, and calls back on the GUI thread."""

    jobAdded = Signal(object)
    jobChanged = Signal(object)
    jobFinished = Signal(object)

    def __init__(self, notifier: Notifier, parent: QObject | None = None, model_threads: int = 1, io_threads: int = 2,
                 train_threads: int = 1, eval_threads: int = 1):
        super().__init__(parent)
        self.notifier = notifier
        self.jobs: list[Job] = []
        self._lanes: dict[str, QThreadPool] = {}
        for lane, n in (("model", model_threads), ("io", io_threads), ("train", train_threads), ("eval", eval_threads)):
            pool = QThreadPool(self)
            pool.setMaxThreadCount(n)
            self._lanes[lane] = pool
        self._bridge = _Bridge(self)
        self._bridge.changed.connect(self.jobChanged)
        self._bridge.finished.connect(self._finished)
        self._active: dict[int, tuple[_Runnable, dict[str, Callable | None]]] = {}
        self._lane_of: dict[int, str] = {}

    # -- submitting ----------------------------------------------------------------------------
    def submit(self, title: str, fn: Callable[..., Any], *, kind: str = "task", lane: str = "model",
               on_done: Callable[[Any], None] | None = None, on_failed: Callable[[Job], None] | None = None,
               on_cancelled: Callable[[Job], None] | None = None, notify_failure: bool = True) -> Job:
        """Run ``fn(progress=, cancel=)`` in the background; callbacks run on the GUI thread."""
        job = Job(title=title, kind=kind)
        last = [0.0, None]

        def listener(j: Job) -> None:  # any thread
            now = time.monotonic()
            if j.status != last[1] or now - last[0] >= PROGRESS_INTERVAL_S or j.status.finished:
                last[0], last[1] = now, j.status
                self._bridge.changed.emit(j)

        job.listener = listener
        runnable = _Runnable(job, fn, self._bridge)
        self._active[job.id] = (runnable, {"done": on_done, "failed": on_failed, "cancelled": on_cancelled,
                                           "notify": notify_failure})
        self._lane_of[job.id] = lane
        ahead = self._ahead_of(job)
        if ahead:  # it queues behind work in the same lane: say what it waits for
            job.message = f"waiting for {ahead[0].title}"
        self.jobs.append(job)
        self.jobAdded.emit(job)
        self._lanes[lane].start(runnable)
        return job

    def _ahead_of(self, job: Job) -> list[Job]:
        """Unfinished jobs of the same lane submitted before ``job`` (running ones first)."""
        lane = self._lane_of.get(job.id)
        ahead = [j for j in self.jobs if j is not job and j.id < job.id and self._lane_of.get(j.id) == lane
                 and not j.status.finished]
        return sorted(ahead, key=lambda j: (j.status != JobStatus.RUNNING, j.id))

    # -- control -------------------------------------------------------------------------------
    def cancel(self, job: Job) -> None:
        if not job.status.finished:
            job.cancel()

    def cancel_all(self) -> None:
        for job in self.jobs:
            self.cancel(job)

    def active(self) -> list[Job]:
        return [j for j in self.jobs if not j.status.finished]

    def is_busy(self, kind: str | None = None) -> bool:
        return any(kind is None or j.kind == kind for j in self.active())

    def wait(self, timeout_ms: int = -1) -> bool:
        """Block until every lane is idle (used on quit and by tests); True when all finished."""
        ok = all(pool.waitForDone(timeout_ms) for pool in self._lanes.values())
        return ok

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        self.cancel_all()
        return self.wait(timeout_ms)

    # -- outcome (GUI thread) ------------------------------------------------------------------
    def _finished(self, job: Job) -> None:
        _, callbacks = self._active.pop(job.id, (None, {}))
        self.jobChanged.emit(job)
        for other in self.jobs:  # jobs still queued behind it now wait for the next one, or for nothing
            if other.status == JobStatus.QUEUED and self._lane_of.get(other.id) == self._lane_of.get(job.id):
                ahead = self._ahead_of(other)
                other.message = f"waiting for {ahead[0].title}" if ahead else "starting…"
                self.jobChanged.emit(other)
        try:
            if job.status == JobStatus.DONE and callbacks.get("done"):
                callbacks["done"](job.result)
            elif job.status == JobStatus.FAILED:
                if callbacks.get("notify", True):
                    self.notifier.error(f"{job.title} failed: {job.error}", details=job.details)
                if callbacks.get("failed"):
                    callbacks["failed"](job)
            elif job.status == JobStatus.CANCELLED:
                self.notifier.info(f"{job.title}: cancelled")
                if callbacks.get("cancelled"):
                    callbacks["cancelled"](job)
        except Exception as exc:  # a bug in a view callback must not take the app down
            import traceback

            self.notifier.error(f"{job.title}: could not show the result ({type(exc).__name__}: {exc})",
                                details=traceback.format_exc())
        self.jobFinished.emit(job)
