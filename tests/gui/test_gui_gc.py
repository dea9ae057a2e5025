"""Garbage is collected on the GUI thread only while the app runs (a worker that collects may destroy dead Qt
objects there and deadlock against the GUI thread: seen twice in CI rehearsals)."""

from __future__ import annotations

import gc
import threading

from guikit import delivered

from slimgui.core.jobs import JobStatus


class _Cycle:
    """Cyclic garbage that records the thread that finally collects it."""

    seen: list[str] = []

    def __init__(self):
        self.me = self

    def __del__(self):
        _Cycle.seen.append(threading.current_thread().name)


def test_cyclic_garbage_made_by_a_worker_is_collected_on_the_gui_thread(qtbot, window):
    assert not gc.isenabled()  # automatic collection is off while a window exists

    def job(progress=None, cancel=None):
        for _ in range(50):
            _Cycle()  # garbage the worker makes (and, with automatic collection on, could collect itself)
        junk = [[i] for i in range(200_000)]  # allocations enough to trip every generation's threshold
        del junk
        from slimgui.core.bench import run_peak_mib

        run_peak_mib(lambda: None)  # core code that collects before measuring: not on a worker
        return len(_Cycle.seen)

    _Cycle.seen.clear()
    submitted = window.runner.submit("make garbage", job, kind="test", lane="model")
    qtbot.waitUntil(lambda: delivered(submitted), timeout=60_000)
    assert submitted.status == JobStatus.DONE and submitted.result == 0  # nothing collected on the worker
    # the app's collector, on its timer, collects once the youngest generation's threshold is passed (freed
    # containers count down, so the worker's burst may have left it below): allocations kept alive pass it
    pressure = [{} for _ in range(3 * gc.get_threshold()[0])]
    qtbot.waitUntil(lambda: len(_Cycle.seen) == 50, timeout=10_000)
    assert len(pressure) and set(_Cycle.seen) == {threading.main_thread().name}
