"""The Plan panel's "Snap widths to latency steps" (issue 18, pytest-qt, offscreen): shown for a model whose units
declare width slices (the gan demo) and hidden for one without (the cnn demo); snapping runs in the background, the
selection becomes the snapped one and the note says what moved.  The staircases are injected (no timing is
asserted); one run measures them for real."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from guikit import delivered  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from slimgui.core import profiling  # noqa: E402
from slimgui.core.jobs import JobStatus  # noqa: E402
from slimgui.core.selection import touched_widths  # noqa: E402

WAIT_MS = 300_000


def wait(qtbot, job):
    assert job is not None
    qtbot.waitUntil(lambda: delivered(job), timeout=WAIT_MS)
    assert job.status == JobStatus.DONE, job.error
    QApplication.processEvents()
    return job


def open_demo(qtbot, w, path):
    before = w.doc.model
    w.open_path(str(path))
    qtbot.waitUntil(lambda: (w.doc.model is not None and w.doc.model is not before) or bool(w.notifier.errors()),
                    timeout=WAIT_MS)
    assert not w.notifier.errors()


def test_snap_widths_in_the_plan_panel(qtbot, make_window, registry, monkeypatch):
    from slimgui_families.cnn.demo import ensure_resnet
    from slimgui_families.gan.demo import ensure_demo

    w = make_window(registry)
    open_demo(qtbot, w, ensure_demo()["model"])
    plan = w.plan_panel
    assert plan.snap_available() and plan.form.isRowVisible(4)
    assert plan.snap_widths("up") is None  # nothing selected yet: a message, no job
    assert "Select" in w.notifier.notifications[-1].text
    plan.choose_preset("inner-75")
    assert touched_widths(w.doc.graph, w.doc.remove) == {"down.4": 16, "down.5": 16, "up.5": 16, "up.4": 16}

    # injected staircases: down.4 is flat up to 32 channels, up.4 up to 20 (no slice fits), the others at an edge
    fake = {"down.4": [32, 64], "down.5": [16, 64], "up.5": [16, 64], "up.4": [20, 64]}
    timed: list[list[str]] = []

    def edges(model, registry, layers, **kw):
        timed.append(list(layers))
        return {lay: {"edges": fake[lay], "widths": [[fake[lay][-1], 0.1]]} for lay in layers}

    real = profiling.width_edges
    monkeypatch.setattr(profiling, "width_edges", edges)
    job = wait(qtbot, plan.snap_widths("up"))
    assert sorted(timed[0]) == ["down.4", "down.5", "up.4", "up.5"]
    assert w.doc.remove == job.result["remove"]
    assert touched_widths(w.doc.graph, w.doc.remove) == {"down.4": 32, "down.5": 16, "up.5": 16, "up.4": 16}
    note = plan.snap_note.text()
    assert "down.4: 16 → <b>32</b> of 64" in note and "1 of 4 moved" in note and "up.4: 16 → <b>16</b>" in note
    assert "32, 64" in plan.snap_note.toolTip()
    assert "down.4.f4" in w.doc.remove  # 32 of 64 kept: the selection is now the fourth eighth

    # down: one step faster where a slice reaches the step below
    fake.update({"up.4": [8, 20, 64]})
    job = wait(qtbot, plan.snap_widths("down"))
    assert plan.snap_direction.currentData() == "down"
    assert touched_widths(w.doc.graph, w.doc.remove)["up.4"] == 8

    # measured for real once (this machine's staircase; no numbers asserted)
    monkeypatch.setattr(profiling, "width_edges", real)
    plan.choose_preset("inner-75")
    job = wait(qtbot, plan.snap_widths("up"))
    rows = job.result["layers"]
    assert {r["layer"] for r in rows} == {"down.4", "down.5", "up.5", "up.4"}
    assert all(r["after"] >= r["before"] and r["edges"][-1] == 64 for r in rows)
    assert not w.notifier.errors()

    # a model whose units declare no width slices: the row is hidden and the control says why
    open_demo(qtbot, w, ensure_resnet()["model"])
    assert not plan.snap_available() and not plan.form.isRowVisible(4)
    assert plan.snap_widths() is None and "no width slices" in w.notifier.notifications[-1].text
