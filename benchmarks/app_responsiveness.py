"""How the app behaves on a model that does not fit in memory (issue 17): run offscreen, prints one JSON line.

    QT_QPA_PLATFORM=offscreen python benchmarks/app_responsiveness.py MODEL --data TEXT [--criterion bi]

Measured, in one run of a real window:
- ``warm_up_s``: the app's background import of the model libraries as it starts (a model dropped meanwhile waits);
- ``structure_s``: then, from asking to open the model to its graph drawn in the model view (weights not read yet);
- during a background analysis, the GUI thread's *stalls*: a 20 ms timer records how late each tick fires;
  ``stall_max_ms`` / ``stall_p99_ms`` / ``stall_median_ms`` (a responsive window stays well under 100 ms);
- ``cancel_s``: with ``--cancel-after S``, from pressing Cancel in the Jobs dock ``S`` seconds into the analysis
  to the job reported cancelled (the criteria check the cancel token between blocks, so about one block's time);
  without it, ``analysis_s``: the analysis' wall time to the scores shown.

Used by ``bench_big.py``; a memory budget (``SLIMGUI_MEMORY_BUDGET``) makes a model that fits stream as a big one
would.  Never a unit test: these are wall times on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--data", help="calibration text file (needed unless --open-only)")
    ap.add_argument("--open-only", action="store_true", help="only open the model and draw it (structure_s)")
    ap.add_argument("--criterion", default="bi")
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=16)
    ap.add_argument("--cancel-after", type=float, default=None, metavar="S")
    ap.add_argument("--timeout", type=float, default=3600)
    args = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import tempfile

    os.environ.setdefault("SLIMGUI_CONFIG_DIR", tempfile.mkdtemp(prefix="slimgui-bench-cfg-"))

    from PySide6.QtCore import QElapsedTimer, QTimer
    from PySide6.QtWidgets import QApplication

    from slimgui.core.jobs import JobStatus
    from slimgui.gui.app import create_window
    from slimgui.gui.main_window import MainWindow

    MainWindow.ask_unsaved = lambda self, what: "discard"  # no modal prompt in a benchmark
    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = create_window()
    window.resize(1280, 800)
    window.show()
    out: dict = {"model": args.model, "criterion": args.criterion}

    def wait(cond, limit: float) -> bool:
        end = time.perf_counter() + limit
        while not cond():
            if time.perf_counter() > end:
                return False
            app.processEvents()
            time.sleep(0.002)
        return True

    t0 = time.perf_counter()  # the app imports the model libraries in the background as it starts; a model dropped
    wait(window.libraries_ready.is_set, 300)  # meanwhile waits for them: measured apart, as the warm-up
    out["warm_up_s"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    window.open_path(args.model)
    if not wait(lambda: window.doc.model is not None and window.doc.graph is not None, args.timeout):
        print(json.dumps({**out, "error": "the model did not open"}))
        return 1
    window.model_panel.view.viewport().grab()  # drawn
    out["structure_s"] = round(time.perf_counter() - t0, 3)
    out["streamed"] = bool(window.doc.graph.attrs.get("streamed"))
    out["blocks"] = len(window.doc.graph.prunable())
    out["notes"] = [n.text for n in window.notifier.notifications][-3:]
    if args.open_only or not args.data:
        window.runner.shutdown(60_000)
        window.close()
        print(json.dumps(out))
        return 0

    panel = window.analysis_panel
    panel.data.setText(args.data)
    if panel.form.widget("seq_len") is not None:
        panel.form.widget("seq_len").setValue(args.seq_len)
    panel.samples.setValue(args.samples)
    panel.batch_size.setValue(args.samples)

    gaps: list[float] = []
    clock = QElapsedTimer()
    clock.start()
    last = [clock.elapsed()]

    def tick() -> None:
        now = clock.elapsed()
        gaps.append(max(0.0, now - last[0] - 20))  # how late this tick came
        last[0] = now

    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(tick)
    t1 = time.perf_counter()
    job = panel.run(args.criterion)
    timer.start()
    if args.cancel_after is not None:
        wait(lambda: job.status.finished, args.cancel_after)
        if not job.status.finished:
            pressed = time.perf_counter()
            window.jobs_panel.cancel_button(job).click()
            wait(lambda: job.status.finished, args.timeout)
            out["cancel_s"] = round(time.perf_counter() - pressed, 3)
    else:
        wait(lambda: job.status.finished and args.criterion in window.doc.scores, args.timeout)
        out["analysis_s"] = round(time.perf_counter() - t1, 3)
    timer.stop()
    out["status"] = job.status.name.lower() if isinstance(job.status, JobStatus) else str(job.status)
    if gaps:
        ordered = sorted(gaps)
        out.update(stall_max_ms=round(ordered[-1], 1), stall_median_ms=round(statistics.median(ordered), 1),
                   stall_p99_ms=round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
                   ticks=len(gaps))
    window.runner.shutdown(60_000)
    window.close()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
