"""How smooth the desktop app stays while it works: the longest event-loop stall during the default analysis.

Opens the main window (offscreen unless QT_QPA_PLATFORM says otherwise) on the demo model, presses
"Analyse" with the default criterion (ppl on the demo's own text) exactly as a user does, and records
the gaps between the ticks of a 5 ms timer on the GUI thread from the press until the scores are on
screen (the first second after the window appears is ignored as startup).  A gap is how long the
window could not react to input or repaint.

Progress goes to stderr; the last stdout line is one JSON object::

    {"gui_max_stall_ms": ..., "gui_p99_stall_ms": ..., "gui_analysis_seconds": ...}

Target: gui_max_stall_ms under 100.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

STARTUP_IGNORE_S = 1.0
TAIL_S = 0.3  # keep measuring briefly after the result: the repaint that shows it counts too


def log(msg: str) -> None:
    print(f"[bench-gui] {msg}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--interval-ms", type=int, default=5, help="tick of the stall probe (default 5 ms)")
    ap.add_argument("--timeout", type=float, default=900, help="give up after this many seconds")
    ap.add_argument("--out", help="also write the JSON object to this file")
    args = ap.parse_args(argv)

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("SLIMGUI_CONFIG_DIR", tempfile.mkdtemp(prefix="slimgui-bench-config-"))

    from PySide6.QtCore import Qt, QTimer

    from slimgui.core.plugins import discover
    from slimgui.gui.app import SCREENSHOT_SIZE, create_app, create_window

    registry = discover()
    log("locating the demo model (built on first use)")
    demo = registry.demo("llm")()
    app = create_app()
    window = create_window(registry=registry)
    window.resize(*SCREENSHOT_SIZE)

    ticks: list[float] = []
    probe = QTimer()
    probe.setTimerType(Qt.TimerType.PreciseTimer)
    probe.setInterval(args.interval_ms)
    probe.timeout.connect(lambda: ticks.append(time.perf_counter()))
    state: dict = {"code": 0}

    def finish(code: int = 0) -> None:
        state.setdefault("end", time.perf_counter())
        state["code"] = code
        QTimer.singleShot(int(TAIL_S * 1000), app.quit)

    def scores_shown() -> None:
        if "pressed" in state and "shown" not in state and "ppl" in window.doc.scores:
            state["shown"] = time.perf_counter()
            log(f"scores on screen {state['shown'] - state['pressed']:.2f}s after pressing Analyse")
            finish(0)

    def opened(model) -> None:
        if model is None:
            log("error: the demo model did not open")
            finish(2)
            return
        panel = window.analysis_panel
        log(f"opened {model.source}; criterion {panel.criterion.currentText()!r} on the demo's text")
        if panel.criterion.currentText() != "ppl":
            log("error: the default criterion is not ppl")
            finish(2)
            return
        window.doc.scoresChanged.connect(scores_shown)
        state["pressed"] = time.perf_counter()
        panel.run_button.click()  # the user's path: the Analyse button
        job = panel.job
        if job is None:
            log("error: Analyse started nothing")
            finish(2)
            return
        window.runner.jobFinished.connect(lambda j: finish(2) if j is job and j.status.value != "done" else None)

    def timeout() -> None:
        if "end" not in state:
            log(f"error: still busy after {args.timeout:.0f}s")
            window.runner.cancel_all()
            finish(1)

    window.show()
    state["shown_window"] = time.perf_counter()
    probe.start()
    window.open_path(demo["model"], then=opened)
    QTimer.singleShot(int(args.timeout * 1000), timeout)
    app.exec()
    probe.stop()
    window.runner.shutdown(30_000)
    if state["code"]:
        return state["code"]

    start = max(state["pressed"], state["shown_window"] + STARTUP_IGNORE_S)
    stop = state["end"] + TAIL_S
    window_ticks = [t for t in ticks if start <= t <= stop]
    gaps = [(b - a) * 1000 for a, b in zip(window_ticks, window_ticks[1:])]
    result = {"gui_max_stall_ms": round(max(gaps, default=0.0), 2),
              "gui_p99_stall_ms": round(percentile(gaps, 0.99), 2),
              "gui_analysis_seconds": round(state["shown"] - state["pressed"], 3)}
    worst = sorted(range(len(gaps)), key=gaps.__getitem__)[-3:]
    log(f"{len(gaps)} tick gaps measured; median {percentile(gaps, 0.5):.1f} ms; worst at "
        + ", ".join(f"{window_ticks[i] - state['pressed']:.2f}s ({gaps[i]:.0f} ms)" for i in reversed(worst)))
    line = json.dumps(result)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
