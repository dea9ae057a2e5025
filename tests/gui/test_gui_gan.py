"""The gan family in the desktop app (pytest-qt, offscreen): the demo generator opens as a U, the sensitivity scan
colours its layers' eighths (the inner layers tolerate more), a plan prunes it into a smaller generator, and the
compare tab shows its translations side by side — with no panel knowing the family.

``SLIMGUI_GAN_SCREENSHOT=FILE`` also saves the model view with the sensitivity heatmap there (how
resources/screenshot-gan.png is made)."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from guikit import delivered  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from slimgui.core.jobs import JobStatus  # noqa: E402

WAIT_MS = 300_000


def wait(qtbot, job, status=JobStatus.DONE):
    assert job is not None
    qtbot.waitUntil(lambda: delivered(job), timeout=WAIT_MS)
    assert job.status == status, job.error
    QApplication.processEvents()
    return job


def test_demo_generator_opens_as_a_u_is_coloured_by_sensitivity_and_pruned(qtbot, make_window, registry):
    from slimgui_families.gan.demo import ensure_demo

    demo = ensure_demo()["model"]
    w = make_window(registry)
    w.open_path(demo)
    qtbot.waitUntil(lambda: w.doc.model is not None or bool(w.notifier.errors()), timeout=WAIT_MS)
    assert not w.notifier.errors() and w.doc.model.family == "gan"
    view = w.model_panel.view
    assert len(view.routes_of("skip")) == 5  # one skip arrow per level but the innermost
    assert len(view.cells_of("down.4")) == 7  # its eighths as cells in its box
    # the sensitivity scan on the demo's own held-out pairs
    a = w.analysis_panel
    assert a.criterion.currentText() == "sensitivity-scan"
    a.samples.setValue(8)
    a.batch_size.setValue(8)
    wait(qtbot, a.run("sensitivity-scan"))
    scores = w.doc.scores["sensitivity-scan"]
    assert set(scores.values) == {u.id for u in w.doc.graph.prunable()}
    table = scores.meta["table"]
    assert table["down.5"]["0.75"] < table["down.1"]["0.75"]  # the innermost layer tolerates more than an outer one
    QApplication.processEvents()
    shot = os.environ.get("SLIMGUI_GAN_SCREENSHOT")
    if shot:  # the U collapsed to its convs, each with its eighths as cells
        w.resize(1500, 900)
        view.expanded.clear()
        view.relayout()
        QApplication.processEvents()
        shown = [view.unit_items[u].sceneBoundingRect() for u in view.unit_items if view.unit_items[u].isVisible()]
        box = shown[0]
        for r in shown[1:]:
            box = box.united(r)
        view.resetTransform()
        view.fitInView(box.adjusted(-20, -20, 20, 20), Qt.AspectRatioMode.KeepAspectRatio)
        QApplication.processEvents()
        assert w.model_panel.grab().save(shot)
    # a plan from the view's units: half of the two innermost levels' filters; applied into a smaller generator
    w.doc.set_remove(["down.5.f4", "up.5.f4", "down.4.f4", "up.4.f4"])
    wait(qtbot, w.plan_panel.apply())
    qtbot.waitUntil(lambda: w.doc.slimmed is not None, timeout=WAIT_MS)
    slim = w.doc.slimmed
    assert slim.config.down[4:] == [32, 32] and slim.config.up[4:] == [32, 32]
    # compare: its translation previewer, one image per model
    c = w.compare_panel
    assert c.media_type() == "image"
    c.form.widget("pairs").setValue(2)
    wait(qtbot, c.generate())
    gen = w.doc.session.results["generation"]
    assert {"original", "slimmed"} <= set(gen)
    assert not w.notifier.errors()
